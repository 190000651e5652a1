"""Errors the gateway turns into JSON replies, each class carrying its HTTP status.

This module imports neither Flask nor gRPC, so that training code can share the
preprocessing errors.
"""


class GatewayError(Exception):
    """Base class: an error with an HTTP status, a short code and a client-safe detail."""

    status = 500
    code = "internal_error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(GatewayError):
    """The request is malformed: no file, an empty upload, an unreadable form."""

    status = 400
    code = "invalid_request"


class InvalidImage(GatewayError):
    """The upload is not a readable image."""

    status = 400
    code = "invalid_image"


class PayloadTooLarge(GatewayError):
    """The upload or the decoded image exceeds a configured limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(GatewayError):
    """The content type or the image format is not one the gateway accepts."""

    status = 415
    code = "unsupported_media_type"


class ModelServerError(GatewayError):
    """The model server failed in a way the client cannot fix."""

    status = 502
    code = "model_server_error"


class ModelServerUnavailable(ModelServerError):
    """The model server cannot be reached or has no available model version."""

    status = 503
    code = "model_server_unavailable"


class ModelServerTimeout(ModelServerError):
    """The model server did not reply within the configured deadline."""

    status = 504
    code = "model_server_timeout"
