"""Return freed heap memory to the system after requests that left the worker large.

Decoding a large image allocates a buffer of up to RPS_MAX_PIXELS x 3 bytes
(about 120 MB at the default). glibc keeps much of that memory in the worker
after it is freed, so without a trim a worker stays at several hundred MB after
one such request.
"""

import ctypes
import ctypes.util
import logging
import os

from flask import Flask, Response

logger = logging.getLogger(__name__)

# Resident size above which a worker trims after a request. A worker serving
# sample-sized images stays near 70 MB, so only large decodes cross this.
TRIM_ABOVE_BYTES = 100 * 1024 * 1024

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _load_malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


# None where the C library is not glibc (musl, macOS): the trim is then skipped.
_malloc_trim = _load_malloc_trim()


def init_app(app: Flask) -> None:
    """Register an after-request hook that trims the heap when the worker is large."""
    if _malloc_trim is None:
        logger.info("malloc_trim is not available; freed memory stays with the workers")
        return
    app.after_request(_trim_if_large)


def resident_bytes() -> int:
    """Return this process's resident set size in bytes, from /proc/self/statm."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_BYTES


def _trim_if_large(response: Response) -> Response:
    try:
        before = resident_bytes()
    except OSError:
        return response
    if before > TRIM_ABOVE_BYTES:
        _malloc_trim(0)
        logger.debug("trimmed the heap: %d MB resident before", before // (1024 * 1024))
    return response
