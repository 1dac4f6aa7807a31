"""Write the inference API's OpenAPI 3.1 document, generated from the handler's routes and models.

``make openapi`` runs ``python -m functions.inference.openapi docs/openapi.json``; a test fails
when the committed document differs from what the code generates.

Powertools adds a 422 "Validation Error" response to every route when validation is on, and the
schemas it refers to. This function never answers 422: its exception handlers turn validation
errors into 400 with the ``ErrorResponse`` body the routes declare. :func:`document` removes what
Powertools adds, so the document lists exactly the statuses the function returns.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from functions.inference import app

TITLE = "truthwatch inference API"
VERSION = "1.0.0"
UNANSWERED_STATUSES = ("422",)
POWERTOOLS_SCHEMAS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")


def schema() -> dict[str, Any]:
    """The OpenAPI document as a dict, without the responses the function never gives."""
    generated: dict[str, Any] = json.loads(
        app.rest_app.get_openapi_json_schema(
            title=TITLE,
            version=VERSION,
            description="Predictions from the served digits model; every prediction is recorded.",
        )
    )
    for operations in generated["paths"].values():
        for operation in operations.values():
            for status in UNANSWERED_STATUSES:
                operation["responses"].pop(status, None)

    schemas = generated["components"]["schemas"]
    for name in POWERTOOLS_SCHEMAS:
        schemas.pop(name, None)
    text = json.dumps(generated)
    dangling = [name for name in POWERTOOLS_SCHEMAS if f"#/components/schemas/{name}" in text]
    if dangling:
        raise RuntimeError(f"the document still refers to removed schemas: {', '.join(dangling)}")
    return generated


def document() -> str:
    """The OpenAPI document as indented JSON with a final newline."""
    return json.dumps(schema(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    """Write the document to the path given (default ``docs/openapi.json``)."""
    target = Path(argv[0]) if argv else Path("docs/openapi.json")
    target.write_text(document(), encoding="utf-8")
    sys.stdout.write(f"wrote {target}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
