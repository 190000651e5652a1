"""gunicorn settings for the gateway.

    gunicorn --config gateway/gunicorn.conf.py 'gateway.app:create_app()'

The app is loaded in each worker after the fork (preload_app is off) and the
master never imports gRPC, because a gRPC channel opened before fork() is not
usable in the child.
"""

import os


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
