"""truthwatch: serve a classifier on AWS Lambda and keep measuring how good it still is.

The package holds the domain code that the Lambda handlers, the local stack and the command line
share: the model card, the model runtime, training and export. It never imports a handler, the
local stack or test code.
"""

__version__ = "0.1.0"
