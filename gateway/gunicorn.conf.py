"""gunicorn settings for the gateway.

    gunicorn --config gateway/gunicorn.conf.py 'gateway.app:create_app()'

The app is loaded in each worker after the fork (preload_app is off) and the
master never imports gRPC, because a gRPC channel opened before fork() is not
usable in the child.

Prometheus metrics run in prometheus-client's multiprocess mode: each worker
writes its samples to files in PROMETHEUS_MULTIPROC_DIR and GET /metrics sums
them. When that variable is not set, the master creates a new temporary folder
before the first fork and removes it when it exits. A folder set by the user
is kept, but the sample files of an earlier run are deleted from it at start,
because prometheus-client would otherwise add them to this run's totals.
"""

import glob
import os
import shutil
import tempfile

_MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# The folder that on_starting created and on_exit removes, or None when the user set it.
_created_multiprocess_dir: str | None = None


def _positive_int(variable: str, default: int) -> int:
    value = os.environ.get(variable)
    if value is None:
        return default
    try:
        number = int(value, 10)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"invalid {variable}: {value!r}; expected a positive integer")
    return number


bind = [os.environ.get("RPS_GATEWAY_BIND", "127.0.0.1:5000")]

# Sized for a 2-core host. A request mostly waits on the gRPC call, which
# releases the GIL, so 4 threads per worker keep requests overlapping. Pillow
# decoding and resizing hold the GIL in part, so a second worker uses the
# second core. Each worker takes about 70 MB resident, so more workers cost
# memory without a spare core to run on. docs/reliability.md has the load-test
# figures behind this.
workers = _positive_int("RPS_GATEWAY_WORKERS", 2)
worker_class = "gthread"
threads = _positive_int("RPS_GATEWAY_THREADS", 4)
preload_app = False

# A worker silent for `timeout` seconds is restarted. After SIGTERM, requests
# in flight get `graceful_timeout` seconds to finish.
timeout = 30
graceful_timeout = 10
keepalive = 5

# The app logs one line per request itself, so gunicorn's access log stays off.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("RPS_LOG_LEVEL", "info").lower()

# The runtime control socket (gunicorn 25.1+) defaults to one fixed path per
# user, which several gateways on one machine would share. Nothing uses it.
control_socket_disable = True


def on_starting(server) -> None:
    """Prepare the metrics folder in the master, before any worker forks and inherits it."""
    global _created_multiprocess_dir

    path = os.environ.get(_MULTIPROCESS_DIR_VARIABLE)
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    else:
        path = tempfile.mkdtemp(prefix="rps-gateway-metrics-")
        _created_multiprocess_dir = path
        os.environ[_MULTIPROCESS_DIR_VARIABLE] = path
    server.log.info("metrics: multiprocess folder %s", path)


def post_fork(server, worker) -> None:
    """Fix the worker's malloc thresholds before its request threads allocate anything."""
    from gateway.memory import limit_heap_retention

    if not limit_heap_retention():
        server.log.warning(
            "memory: mallopt is not available; workers keep the memory that large requests free"
        )


def child_exit(server, worker) -> None:
    """Drop the live-gauge files of a worker that exited. Its counters stay in the totals."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the metrics folder if on_starting created it."""
    if _created_multiprocess_dir is not None:
        shutil.rmtree(_created_multiprocess_dir, ignore_errors=True)
        server.log.info("metrics: removed multiprocess folder %s", _created_multiprocess_dir)
