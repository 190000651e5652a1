"""The GET /openapi.json route, which serves the committed OpenAPI description of the gateway."""

from pathlib import Path

from flask import Blueprint, Flask, Response, current_app

DOCUMENT_PATH = Path(__file__).resolve().parent / "openapi.json"

# The document's bytes as committed, read once per app in init_app.
_DOCUMENT_KEY = "rps_openapi_document"

blueprint = Blueprint("openapi", __name__)


def init_app(app: Flask) -> None:
    """Read gateway/openapi.json and register the route that serves it."""
    app.extensions[_DOCUMENT_KEY] = DOCUMENT_PATH.read_bytes()
    app.register_blueprint(blueprint)


@blueprint.get("/openapi.json")
def openapi_document() -> Response:
    """Serve the OpenAPI 3.0 description of the gateway's HTTP API."""
    return Response(current_app.extensions[_DOCUMENT_KEY], mimetype="application/json")
