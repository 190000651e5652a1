#!/usr/bin/env bash
# Start a model server and the gateway in the foreground; Ctrl-C stops both.
#
# The model server is TensorFlow Serving's `tensorflow_model_server` when it is
# on PATH, otherwise the local stand-in `python -m serving.model_server`, which
# speaks the same gRPC API.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-.venv}
case $venv in /*) ;; *) venv=$root/$venv ;; esac
model_port=${MODEL_PORT:-8500}
gateway_port=${GATEWAY_PORT:-5000}
model_base_path=${MODEL_BASE_PATH:-$root/serving/models/rps}
cd "$root"

if command -v tensorflow_model_server >/dev/null; then
    model_server=(tensorflow_model_server)
    echo "up: using TensorFlow Serving ($(command -v tensorflow_model_server))"
else
    model_server=("$venv/bin/python" -m serving.model_server)
    echo "up: tensorflow_model_server is not on PATH; using the local model server"
fi

pids=()
readiness_pid=
stop_all() {
    trap - INT TERM EXIT
    kill -TERM "${pids[@]}" $readiness_pid 2>/dev/null || true
    wait "${pids[@]}" $readiness_pid 2>/dev/null || true
}
# Bash skips the INT trap when the child it waits for handles SIGINT and exits
# with 0, so a Ctrl-C often ends in the report after `wait` below instead.
# 130 and 143 are the shell's codes for INT and TERM.
trap 'echo "up: stopping"; stop_all; exit 130' INT
trap 'echo "up: stopping"; stop_all; exit 143' TERM
trap stop_all EXIT

"${model_server[@]}" --port="$model_port" --model_name=rps \
    --model_base_path="$model_base_path" &
pids+=($!)

RPS_MODEL_SERVER=${RPS_MODEL_SERVER:-localhost:$model_port} \
RPS_GATEWAY_BIND=${RPS_GATEWAY_BIND:-127.0.0.1:$gateway_port} \
    "$venv/bin/gunicorn" --config gateway/gunicorn.conf.py 'gateway.app:create_app()' &
pids+=($!)

echo "up: starting the gateway on http://localhost:$gateway_port and the model server" \
    "on gRPC port $model_port; loading the model takes about 10 s"

# Report readiness once, so that users know when `make classify` will work.
"$venv/bin/python" - "$gateway_port" <<'PYTHON' &
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/readyz"
# On another port, make classify needs that port too.
port_option = "" if sys.argv[1] == "5000" else f" GATEWAY_PORT={sys.argv[1]}"
for _ in range(240):
    try:
        urllib.request.urlopen(url, timeout=2)
        print(f"up: ready; try `make classify IMG=rock1.png{port_option}` in another terminal")
        break
    except OSError:
        time.sleep(0.5)
else:
    print(f"up: {url} did not return 200 within 2 minutes; see the log above")
PYTHON
readiness_pid=$!

# Stop both as soon as either exits, and report which one it was.
exited=
set +e
wait -n -p exited "${pids[@]}"
status=$?
set -e
if [ "$exited" = "${pids[0]}" ]; then
    server="model server" other="gateway"
else
    server="gateway" other="model server"
fi
# Both servers exit with 0 only on a stop request: Ctrl-C, or a signal sent to one of them.
if [ "$status" -eq 0 ]; then
    echo "up: the $server stopped; stopping the $other"
else
    echo "up: the $server exited with status $status; stopping the $other"
fi
exit "$status"
