"""The browser page at GET /: gateway/static/index.html with its script and style sheet."""

from pathlib import Path

from flask import Blueprint, Flask, Response, request, send_from_directory

STATIC_FOLDER = Path(__file__).resolve().parent / "static"

blueprint = Blueprint("web", __name__)

# The page loads nothing from other origins, so it works offline. Previews are
# blob: URLs, the camera's video is a MediaStream set through srcObject (which
# CSP does not govern) and the page's script calls only POST /classify.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob: data:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

# The camera is the only powerful feature the page uses, and only for itself.
PERMISSIONS_POLICY = "camera=(self), microphone=(), geolocation=()"

# The file names carry no version, so browsers revalidate every time and get a
# 304 from the ETag while the file is unchanged.
CACHE_CONTROL = "no-cache"

_ASSET_TYPES = {
    "app.js": "text/javascript",
    "style.css": "text/css",
}


def init_app(app: Flask) -> None:
    """Register the page's routes and the headers added to each of its responses."""
    app.register_blueprint(blueprint)


@blueprint.get("/")
def index() -> Response:
    """Serve the page that uploads images to POST /classify and shows the predictions."""
    return _send("index.html", "text/html")


@blueprint.get("/static/app.js", defaults={"name": "app.js"})
@blueprint.get("/static/style.css", defaults={"name": "style.css"})
def asset(name: str) -> Response:
    """Serve the page's script or style sheet."""
    return _send(name, _ASSET_TYPES[name])


def _send(name: str, mimetype: str) -> Response:
    return send_from_directory(STATIC_FOLDER, name, mimetype=mimetype)


@blueprint.after_app_request
def _add_page_headers(response: Response) -> Response:
    # Flask's own /static/<path> route serves the same folder, because the app
    # is created with the gateway package as its root, so it gets the headers too.
    if request.endpoint not in ("static", "web.index", "web.asset"):
        return response

    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Permissions-Policy"] = PERMISSIONS_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response
