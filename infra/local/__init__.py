"""The local stack: the whole truthwatch loop on one machine, against an in-process moto server.

Nothing here is deployed. ``python -m infra.local serve`` (``make serve``) starts the stack and
``python -m infra.local demo`` (``make demo``) plays the story against it; the modules are:

=============  ==================================================================================
``emf``        embedded-metric-format log lines become CloudWatch datapoints, as Lambda's log
               pipeline would turn them
``runtime``    a Lambda-like runtime for the handlers: environment, context, captured output
``gateway``    HTTP requests on 127.0.0.1 become API Gateway proxy events for the inference handler
``alarms``     the local alarm evaluator (moto stores alarms but never evaluates them)
``outbox``     emails sent through moto's SES written to a folder as ``.eml`` files
``resources``  what ``template.yaml`` declares, created in moto
``stack``      all of the above started, wired and stopped together
``demo``       the healthy / drifted / recovered story played over HTTP
=============  ==================================================================================
"""
