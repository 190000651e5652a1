"""Keep gunicorn workers from holding on to memory that large requests freed.

A worker grows after large images in two ways, and each has its own fix here:

- glibc raises its mmap threshold to the size of the largest mmapped block
  freed so far (up to 32 MiB) and then keeps up to twice that much unused
  memory at the top of every malloc arena (mallopt(3), "M_MMAP_THRESHOLD").
  The request threads of a gthread worker get arenas of their own, so after a
  few 12 MP JPEG uploads (2.3 MB each) a worker kept about 15 MB more than
  before them. malloc_trim() releases free blocks inside every arena but
  trims the top of the main arena only (glibc malloc.c, mtrim), and trimming
  after every request still left such a worker at 81 MB in the benchmark's
  JPEG phase. So `limit_heap_retention` fixes both thresholds instead, in
  each worker after the fork.
- Decoding a huge image allocates up to RPS_MAX_PIXELS x 3 bytes (about
  120 MB at the default). After such a request the after-request hook calls
  malloc_trim() once the worker is over TRIM_ABOVE_BYTES, which releases what
  the fixed thresholds leave behind.
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

# Blocks of at least this size are mmapped and unmapped when freed, so their
# memory goes back to the system at once. Steady-state requests stay below it:
# a 300x300 RGBA decode is 360 kB and one 150x150 RGB input 67 kB. Requests
# with larger blocks page-fault them in again each time, which cost about
# 0.65 ms per MB on the 2-CPU benchmark VM (a numpy fill of 2.4 MB: 1.6 ms of
# CPU against 0.06 ms when glibc reuses the memory).
MMAP_THRESHOLD_BYTES = 1024 * 1024

# Unused memory above this size at the top of an arena is released on free.
# Twice the mmap threshold, as glibc's own dynamic setting keeps, so that the
# blocks of steady-state requests do not shrink and regrow an arena each time.
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES

# mallopt(3) parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _load_libc_function(name: str, argtypes: list):
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    function = getattr(ctypes.CDLL(library), name, None)
    if function is not None:
        function.argtypes = argtypes
        function.restype = ctypes.c_int
    return function


# None where the C library is not glibc (musl, macOS): the tuning is then skipped.
_malloc_trim = _load_libc_function("malloc_trim", [ctypes.c_size_t])
_mallopt = _load_libc_function("mallopt", [ctypes.c_int, ctypes.c_int])


def limit_heap_retention() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; return False where unsupported.

    Call it in each gunicorn worker after the fork, before the request threads
    start, because it changes the allocator of the whole process.
    """
    if _mallopt is None:
        return False
    # mallopt returns 1 on success and 0 on error.
    mmap_set = _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    trim_set = _mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return mmap_set and trim_set


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
