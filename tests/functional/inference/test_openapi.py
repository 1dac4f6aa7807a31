from pathlib import Path

from functions.inference import openapi

COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_committed_openapi_document_matches_the_code():
    assert COMMITTED.read_text(encoding="utf-8") == openapi.document(), (
        "run `make openapi` and commit the result"
    )


def test_document_describes_the_three_routes_and_the_request_schema():
    import json

    doc = json.loads(openapi.document())

    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {"/predict", "/health", "/model"}
    request = doc["components"]["schemas"]["PredictRequest"]
    assert set(request["properties"]) == {"instances", "inputs", "inference_ids"}
