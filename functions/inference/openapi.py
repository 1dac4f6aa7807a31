"""Write the inference API's OpenAPI 3.1 document, generated from the handler's routes and models.

``make openapi`` runs ``python -m functions.inference.openapi docs/openapi.json``; a test fails
when the committed document differs from what the code generates.
"""

from __future__ import annotations

import sys
from pathlib import Path

from functions.inference import app

TITLE = "truthwatch inference API"
VERSION = "1.0.0"


def document() -> str:
    """The OpenAPI document as indented JSON with a final newline."""
    schema: str = app.rest_app.get_openapi_json_schema(
        title=TITLE,
        version=VERSION,
        description="Predictions from the served digits model; every prediction is recorded.",
    )
    return schema + "\n"


def main(argv: list[str]) -> int:
    """Write the document to the path given (default ``docs/openapi.json``)."""
    target = Path(argv[0]) if argv else Path("docs/openapi.json")
    target.write_text(document(), encoding="utf-8")
    sys.stdout.write(f"wrote {target}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
