"""Read the uploaded images from a multipart form or a raw image body."""

from dataclasses import dataclass

from flask import Request

from gateway.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

FILE_FIELD = "file"
MULTIPART = "multipart/form-data"

# The name used in error details for a raw body sent without ?filename=.
RAW_BODY_LABEL = "request body"


@dataclass(frozen=True)
class Upload:
    """One uploaded image: the file name as sent (or None), its bytes and its name in errors."""

    name: str | None
    data: bytes
    label: str


def read_uploads(request: Request, max_files: int) -> list[Upload]:
    """Return the request's images in upload order, from `file` parts or a raw image body.

    Raises UnsupportedMediaType for other content types, InvalidRequest when
    there is no image or one is empty, and PayloadTooLarge for more than
    `max_files` images.
    """
    if request.mimetype == MULTIPART:
        return read_form_uploads(request, max_files)
    if request.mimetype.startswith("image/"):
        return [_read_body(request)]
    raise UnsupportedMediaType(
        f"content type {request.mimetype or '(none)'} is not accepted; send {MULTIPART} "
        f"with parts named {FILE_FIELD!r}, or a raw body with an image/* content type"
    )


def read_form_uploads(request: Request, max_files: int) -> list[Upload]:
    """Return the `file` parts of a multipart form; raise like read_uploads."""
    if request.mimetype != MULTIPART:
        raise UnsupportedMediaType(
            f"content type {request.mimetype or '(none)'} is not accepted; "
            f"send {MULTIPART} with a part named {FILE_FIELD!r}"
        )

    parts = request.files.getlist(FILE_FIELD)
    if not parts:
        raise InvalidRequest(
            f"the form has no file part named {FILE_FIELD!r}; "
            f"send the image as in curl -F {FILE_FIELD}=@rock1.png"
        )
    if len(parts) > max_files:
        raise PayloadTooLarge(
            f"the request has {len(parts)} files; the limit is {max_files} per request"
        )

    uploads = []
    for index, part in enumerate(parts, start=1):
        name = part.filename or None
        upload = Upload(name=name, data=part.read(), label=name or f"file {index}")
        _check_not_empty(upload)
        uploads.append(upload)
    return uploads


def _read_body(request: Request) -> Upload:
    name = request.args.get("filename") or None
    upload = Upload(name=name, data=_read_limited_body(request), label=name or RAW_BODY_LABEL)
    _check_not_empty(upload)
    return upload


def _read_limited_body(request: Request) -> bytes:
    limit = request.max_content_length
    if limit is None or request.content_length is not None:
        # Werkzeug rejects a declared Content-Length above the limit with 413.
        return request.get_data(cache=False)

    # A chunked body has no Content-Length, and Werkzeug's stream would cut it
    # at the limit without an error, so one byte past the limit is read here.
    data = request.environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
    return data


def _check_not_empty(upload: Upload) -> None:
    if not upload.data:
        raise InvalidRequest(f"{upload.label}: the upload is empty")
