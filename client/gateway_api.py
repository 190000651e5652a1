"""Call the gateway's POST /classify and check the reply against the API in docs/api.md."""

import socket
from collections.abc import Sequence
from typing import Any

import requests

from client.errors import GatewayFailed, GatewayUnreachable, RequestRejected
from client.images import Upload

# Maximum length, in characters, of a `detail` quoted in an error message,
# because a server that is not the gateway may send a whole page.
MAX_DETAIL_LENGTH = 300

# requests 2.34 and urllib3 2.8 nest the socket error 3 levels deep, so this
# bound only guards against a cyclic chain.
_MAX_CAUSE_DEPTH = 10


def classify(
    session: requests.Session, url: str, uploads: Sequence[Upload], timeout: float
) -> list[dict[str, Any]]:
    """Send images in one multipart request and return the predictions in upload order.

    `url` is the gateway's base URL without a trailing slash. `timeout` (seconds)
    applies to connecting and to each read of the reply, not to the whole call.
    Raises GatewayUnreachable, RequestRejected or GatewayFailed.
    """
    files = [("file", upload) for upload in uploads]
    try:
        # requests follows a 301, 302 or 303 to a POST with a GET that drops the
        # images, so a redirect is reported instead.
        response = session.post(
            f"{url}/classify", files=files, timeout=(timeout, timeout), allow_redirects=False
        )
    except requests.ConnectTimeout as error:
        raise GatewayUnreachable(
            f"cannot reach the gateway at {url}: connecting timed out after {timeout:g} s"
        ) from error
    except requests.Timeout as error:
        raise GatewayUnreachable(
            f"the gateway at {url} did not reply within {timeout:g} s; "
            f"retry later or raise --timeout"
        ) from error
    except requests.ConnectionError as error:
        raise GatewayUnreachable(
            f"cannot reach the gateway at {url}: {_describe_connection_failure(error)}"
        ) from error
    except requests.RequestException as error:
        # A body that is cut off or cannot be decoded, for example.
        raise GatewayFailed(
            f"the reply from the gateway at {url} is unreadable: {error}"
        ) from error

    return _predictions(response, url, expected_count=len(uploads))


def _predictions(
    response: requests.Response, url: str, expected_count: int
) -> list[dict[str, Any]]:
    if 400 <= response.status_code < 500:
        raise RequestRejected(_error_message(response, url))
    if response.status_code != 200:
        raise GatewayFailed(_error_message(response, url))

    try:
        body = response.json()
    except ValueError as error:
        raise GatewayFailed(f"the reply from the gateway at {url} is not JSON") from error

    predictions = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(predictions, list) or not all(isinstance(p, dict) for p in predictions):
        raise GatewayFailed(f"the reply from the gateway at {url} has no list of predictions")
    if len(predictions) != expected_count:
        raise GatewayFailed(
            f"the gateway at {url} returned {len(predictions)} predictions "
            f"for {expected_count} images"
        )
    return predictions


def _error_message(response: requests.Response, url: str) -> str:
    """Build the message for an error reply, quoting the gateway's `detail` when there is one."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}

    error_code = body.get("error")
    reason = error_code if isinstance(error_code, str) else response.reason
    status = f"HTTP {response.status_code} {reason}" if reason else f"HTTP {response.status_code}"

    detail = body.get("detail")
    if isinstance(detail, str) and detail.strip():
        return f"{_shorten(detail)} ({status})"

    location = response.headers.get("Location")
    if response.is_redirect and location:
        return (
            f"the gateway at {url} replied {status}, redirecting to {location}; "
            f"pass the gateway's own address with --url"
        )
    return f"the gateway at {url} replied {status}"


def _shorten(text: str) -> str:
    if len(text) <= MAX_DETAIL_LENGTH:
        return text
    return text[: MAX_DETAIL_LENGTH - 3] + "..."


def _describe_connection_failure(error: BaseException) -> str:
    """Return the innermost cause of a failed connection, such as "connection refused"."""
    cause = error
    for _ in range(_MAX_CAUSE_DEPTH):
        inner = _inner_exception(cause)
        if inner is None:
            break
        cause = inner

    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the host name ({cause.strerror})"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror[0].lower() + cause.strerror[1:]
    return str(cause) or type(cause).__name__


def _inner_exception(error: BaseException) -> BaseException | None:
    # urllib3's MaxRetryError keeps its cause in `reason`, requests wraps
    # urllib3's errors as the first argument, and urllib3 chains the socket
    # error with `raise ... from`.
    reason = getattr(error, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    if error.__cause__ is not None:
        return error.__cause__
    return next((arg for arg in error.args if isinstance(arg, BaseException)), None)
