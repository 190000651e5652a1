"""The Flask application factory and its JSON error handlers."""

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from gateway import memory, metrics, openapi, request_log, routes, web
from gateway.errors import GatewayError
from gateway.model_client import ModelClient
from gateway.settings import load_settings

logger = logging.getLogger(__name__)

# Error codes from docs/api.md for the HTTP errors Flask and Werkzeug raise.
# Other statuses get their standard reason phrase in snake_case.
_HTTP_ERROR_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    500: "internal_error",
}


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Create the gateway app from RPS_* environment variables and optional `overrides`.

    `overrides` takes gateway.settings.Settings field names. Raises
    SettingsError when a setting is invalid. No gRPC channel opens here.
    """
    settings = load_settings(overrides=overrides)
    request_log.configure_logging(settings.log_level)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.json.sort_keys = False

    model_client = ModelClient(
        target=settings.model_server,
        model_name=settings.model_name,
        timeout=settings.rpc_timeout,
        metadata_ttl=settings.metadata_ttl,
    )
    request_log.init_app(app)
    routes.init_app(app, settings, model_client)
    web.init_app(app)
    metrics.init_app(app)
    openapi.init_app(app)
    memory.init_app(app)

    app.register_error_handler(GatewayError, _handle_gateway_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected_error)

    logger.info(
        "gateway created: model %s at %s, RPC timeout %g s, max upload %d bytes, max %d files",
        settings.model_name, settings.model_server, settings.rpc_timeout,
        settings.max_upload_bytes, settings.max_files,
    )
    return app


def error_response(status: int, code: str, detail: str) -> Response:
    """Build the JSON error reply {"error": code, "detail": detail} with `status`."""
    request_log.set_error(code, detail)
    response = jsonify(error=code, detail=detail)
    response.status_code = status
    return response


def _handle_gateway_error(error: GatewayError) -> Response:
    return error_response(error.status, error.code, error.detail)


def _handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    code = _HTTP_ERROR_CODES.get(status) or (error.name or "error").lower().replace(" ", "_")

    if status == 404:
        detail = f"path {request.path} not found"
    elif isinstance(error, MethodNotAllowed):
        allowed = ", ".join(error.valid_methods or [])
        detail = f"method {request.method} is not allowed on {request.path}; allowed: {allowed}"
    elif isinstance(error, RequestEntityTooLarge):
        detail = _too_large_detail()
    else:
        # Werkzeug's descriptions are fixed texts that contain no request data.
        detail = error.description or error.name

    response = error_response(status, code, detail)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def _too_large_detail() -> str:
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        return f"the request body exceeds the limit of {limit} bytes"

    # Werkzeug also raises 413 for a chunked body over the limit and for forms
    # with too many parts or too large a non-file field.
    return (
        f"the request exceeds a size limit: at most {limit} bytes of body, "
        f"{request.max_form_parts} form parts and {request.max_form_memory_size} bytes "
        "per non-file form field"
    )


def _handle_unexpected_error(error: Exception) -> Response:
    logger.error("unhandled error on %s %s", request.method, request.path, exc_info=error)
    return error_response(500, "internal_error", "the gateway failed; the error is in its log")
