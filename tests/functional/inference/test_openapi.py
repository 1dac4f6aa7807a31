import json
from pathlib import Path

from functions.inference import openapi
from tests.functional.inference.conftest import documented_statuses

COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_committed_openapi_document_matches_the_code():
    assert COMMITTED.read_text(encoding="utf-8") == openapi.document(), (
        "run `make openapi` and commit the result"
    )


def test_document_describes_the_four_routes_and_the_request_schema():
    doc = json.loads(openapi.document())

    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {"/predict", "/explain", "/health", "/model"}
    request = doc["components"]["schemas"]["PredictRequest"]
    assert set(request["properties"]) == {"instances", "inputs", "inference_ids"}
    explain_body = doc["paths"]["/explain"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert explain_body == {"$ref": "#/components/schemas/PredictRequest"}


def test_document_lists_the_statuses_the_function_answers_and_never_422():
    doc = json.loads(openapi.document())

    assert documented_statuses("POST", "/predict") == {200, 400, 413, 415, 500}
    assert documented_statuses("POST", "/explain") == {200, 400, 413, 415, 500}
    assert documented_statuses("GET", "/health") == {200}
    assert documented_statuses("GET", "/model") == {200}
    assert "422" not in json.dumps(
        {p: {m: list(op["responses"]) for m, op in ops.items()} for p, ops in doc["paths"].items()}
    )
    assert not {"HTTPValidationError", "ValidationError"} & set(doc["components"]["schemas"])


def test_every_refusal_is_documented_with_the_error_body():
    doc = json.loads(openapi.document())

    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
