#!/usr/bin/env bash
# Container test: build the gateway image from gateway/Dockerfile, run it with
# podman next to a model server container on a private network, and classify
# the bundled samples through it with the project's CLI client.
#
# The model server here is NOT TensorFlow Serving. No container registry is
# reachable from this project's machines, so the tensorflow/serving image that
# docker-compose.yml runs cannot be pulled. serving/Dockerfile.local packages
# the local model server (python -m serving.model_server) instead: it speaks
# the same gRPC API, but TensorFlow Serving's REST port, batching and
# monitoring configs are not exercised. docker-compose.yml itself is only
# validated (docker-compose config plus check_configs.py), never started.
#
# The script drives podman directly rather than through a compose override
# file. Debian's podman-compose 1.0.3 merges an override by appending lists, so
# an override cannot replace the serving command, its healthcheck or the
# gateway's published port 5000, and the test must publish on a free loopback
# port. Debian's docker-compose 1.29.2 would need podman's Docker API service,
# and it also merges `ports` lists by appending.
#
# Usage: tests/containers/run.sh   (as root; `make test-containers` runs it)
# Needs .venv from `make install` and a model version under serving/models/rps
# (or under $MODEL_BASE_PATH when set).
# Installs podman, runc, debootstrap and docker-compose with apt-get when they
# are missing. Exit status 0 when every check passed, 1 otherwise, 130 when
# interrupted.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/tests/containers
cd "$root"

# Podman settings that work on hosts without systemd and with mixed cgroups.
export CONTAINERS_CONF=$here/containers.conf

BASE_IMAGE=localhost/debian:bookworm
GATEWAY_IMAGE=localhost/rps-gateway:test
MODEL_SERVER_IMAGE=localhost/rps-model-server-local:test
# Podman's default limits are rejected on this kind of host, so every build
# and container gets explicit ones.
LIMITS=(--ulimit nproc=4096:4096 --ulimit nofile=1024:1024)
# Seconds to wait for the gateway to report ready, because the model server
# imports TensorFlow and loads the SavedModel first.
READY_TIMEOUT=180
# Seconds to wait for a restart policy to bring a killed container back.
RESTART_TIMEOUT=30
# Seconds to wait for the model server to load a new version directory.
VERSION_TIMEOUT=60
# The model whose latest version the test serves, as in scripts/up.sh.
model_base_path=${MODEL_BASE_PATH:-$root/serving/models/rps}

run_id=rps-containers-$$
network=$run_id
serving_container=$run_id-serving
gateway_container=$run_id-gateway
work=$(mktemp -d "/tmp/$run_id.XXXXXX")
started=$SECONDS
passed=0
failed=0

log() { printf '%s [%3ds] %s\n' "containers:" "$((SECONDS - started))" "$*"; }
pass() { passed=$((passed + 1)); log "PASS $*"; }
fail() { failed=$((failed + 1)); log "FAIL $*"; }
die() { log "ERROR $*"; exit 1; }

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if ((status != 0 || failed > 0)); then
        for container in "$serving_container" "$gateway_container"; do
            if podman container exists "$container" 2>/dev/null; then
                log "last log lines of $container:"
                podman logs --tail 40 "$container" 2>&1 | sed 's/^/    /' || true
            fi
        done
    fi
    podman rm --force --time 2 "$gateway_container" "$serving_container" >/dev/null 2>&1 || true
    podman network rm --force "$network" >/dev/null 2>&1 || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Install the container tools from Debian's registry when they are missing.
install_tools() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    # With the CNI network backend, containers find each other by name only
    # through this plugin, and --no-install-recommends leaves it out.
    [ -e /usr/lib/cni/dnsname ] || missing+=(golang-github-containernetworking-plugin-dnsname)
    if ((${#missing[@]} == 0)); then
        return
    fi
    log "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# Import a minimal Debian bookworm root file system as $BASE_IMAGE, once per
# machine. Later runs reuse the image from podman's storage.
build_base_image() {
    if podman image exists "$BASE_IMAGE"; then
        log "base image $BASE_IMAGE exists; reusing it"
        return
    fi
    log "building $BASE_IMAGE with debootstrap"
    local rootfs=$work/rootfs
    timeout 600 debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian \
        >"$work/debootstrap.log" 2>&1 || {
        tail -20 "$work/debootstrap.log"
        die "debootstrap failed; the last lines of its log are above"
    }
    # Downloaded packages and package lists are not needed in the image.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
}

# Build one image from the repository root. pip inside the build gets the
# host's CA certificates, so that downloads from PyPI also work behind a
# TLS-inspecting proxy whose CA only the host trusts. The bind mounts are not
# part of the image.
build_image() {
    local dockerfile=$1 tag=$2
    local ca_bundle=/etc/ssl/certs/ca-certificates.crt
    local mounts=()
    if [[ -f $ca_bundle ]]; then
        printf '[global]\ncert = /run/host-ca-certificates.crt\n' >"$work/pip.conf"
        mounts=(-v "$ca_bundle:/run/host-ca-certificates.crt:ro" -v "$work/pip.conf:/etc/pip.conf:ro")
    fi
    local began=$SECONDS previous
    previous=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    # --format docker keeps the HEALTHCHECK instruction, which OCI images drop.
    if ! timeout 1200 podman build --format docker "${LIMITS[@]}" "${mounts[@]}" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" -f "$dockerfile" -t "$tag" . \
        >"$work/build.log" 2>&1; then
        tail -30 "$work/build.log"
        die "podman build -f $dockerfile failed; the last lines of its output are above"
    fi
    local size current
    current=$(podman image inspect --format '{{.Id}}' "$tag")
    # Remove the image that the tag named before. Layers that the build cache
    # still uses stay.
    if [[ -n $previous && $previous != "$current" ]]; then
        podman rmi "$previous" >/dev/null 2>&1 || true
    fi
    size=$(podman image inspect --format '{{.Size}}' "$tag")
    log "built $tag from $dockerfile in $((SECONDS - began)) s, $((size / 1000000)) MB"
}

# Print the HTTP status code of a GET request, or 000 when there is no reply.
http_status() {
    python3 - "$1" <<'EOF'
import sys
import urllib.error
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as reply:
        print(reply.status)
except urllib.error.HTTPError as error:
    print(error.code)
except OSError:
    print("000")
EOF
}

# Print the model version that GET /readyz reports, or nothing when not ready.
ready_version() {
    python3 - "$1" <<'EOF'
import json
import sys
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1] + "/readyz", timeout=5) as reply:
        print(json.load(reply)["model"]["version"])
except (OSError, ValueError, KeyError, TypeError):
    pass
EOF
}

# Wait until `ready_version URL` prints $2 (any version when $2 is empty).
wait_ready() {
    local url=$1 expected=${2:-} timeout=$3
    local deadline=$((SECONDS + timeout)) version
    while ((SECONDS < deadline)); do
        version=$(ready_version "$url")
        if [[ -n $version && ( -z $expected || $version == "$expected" ) ]]; then
            return 0
        fi
        sleep 1
    done
    return 1
}

# Classify the three bundled samples with the CLI client and check each label,
# and also the model version in each prediction when $3 is given.
classify_samples() {
    local url=$1 when=$2 version=${3:-}
    local output=$work/classify.json
    if ! timeout 60 "$root/.venv/bin/python" -m client --url "$url" --json \
        rock1.png paper1.png scissors1.png >"$output" 2>"$work/classify.err"; then
        fail "classify $when: the client failed: $(tr '\n' ' ' <"$work/classify.err")"
        return
    fi
    local mismatches
    mismatches=$(python3 - "$output" "$version" <<'EOF'
import json
import sys

expected = {"rock1.png": "rock", "paper1.png": "paper", "scissors1.png": "scissors"}
predictions = json.load(open(sys.argv[1]))["predictions"]
for prediction in predictions:
    name, label = prediction["file"], prediction["label"]
    if expected.pop(name, label) != label:
        print(f"{name}: labelled {label}")
    if sys.argv[2] and str(prediction["model"]["version"]) != sys.argv[2]:
        print(f"{name}: answered by version {prediction['model']['version']}")
for name in expected:
    print(f"{name}: no prediction")
EOF
    ) || mismatches="the client's --json output is not the documented shape"
    if [[ -z $mismatches ]]; then
        pass "classify $when: rock1, paper1, scissors1 labelled rock, paper, scissors"
    else
        fail "classify $when: $mismatches"
    fi
}

# Wait until the client gets a reply other than HTTP 5xx (its exit status 5).
# Each gunicorn worker has its own gRPC channel, and /readyz reports only on
# the worker that served it. A worker whose channel is still in reconnect
# backoff (up to 5 s) after the model server came up returns 503 at once.
# Log how long that lasted, because a client sees the same 503s.
wait_classify_available() {
    local url=$1 timeout=$2
    local began=$SECONDS deadline=$((SECONDS + timeout)) status
    while ((SECONDS < deadline)); do
        status=0
        timeout 60 "$root/.venv/bin/python" -m client --url "$url" rock1.png \
            >/dev/null 2>&1 || status=$?
        if ((status != 5)); then
            if ((SECONDS > began)); then
                log "NOTE: /classify returned 5xx for about $((SECONDS - began)) s after /readyz returned 200"
            fi
            return 0
        fi
        sleep 1
    done
    return 1
}

# Print the container's restart count and start time, which change on a restart.
container_run_id() {
    podman inspect --format '{{.RestartCount}} {{.State.StartedAt}}' "$1"
}

# Wait until the container runs again after a kill: another restart count or start time.
wait_restarted() {
    local container=$1 before=$2 timeout=$3
    local deadline=$((SECONDS + timeout)) state
    while ((SECONDS < deadline)); do
        state=$(podman inspect --format '{{.State.Status}}' "$container")
        if [[ $state == running && $(container_run_id "$container") != "$before" ]]; then
            return 0
        fi
        sleep 1
    done
    return 1
}

check_production_compose() {
    # Debian's docker-compose 1.29 validates the file against the compose
    # schema and prints it resolved. It contacts no engine for `config`.
    if ! docker-compose -f docker-compose.yml config >"$work/compose.yml" 2>"$work/compose.err"; then
        fail "docker-compose config rejects docker-compose.yml: $(tr '\n' ' ' <"$work/compose.err")"
        return
    fi
    pass "docker-compose 1.29 config accepts docker-compose.yml"
    # Debian's python3-yaml comes with docker-compose.
    if /usr/bin/python3 "$here/check_configs.py" compose "$work/compose.yml"; then
        pass "docker-compose.yml: services, image tag, ports, volumes and config files"
    else
        fail "docker-compose.yml: see the lines above"
    fi
    if "$root/.venv/bin/python" "$here/check_configs.py" tfserving; then
        pass "serving/tfserving configs parse as TensorFlow Serving 2.21 protos"
    else
        fail "serving/tfserving configs: see the lines above"
    fi
}

# --- prerequisites ---------------------------------------------------------

if ((EUID != 0)); then
    die "run as root: podman here runs rootful containers"
fi
[[ -x $root/.venv/bin/python ]] || die "missing .venv; run make install first"
model_versions=$(find "$model_base_path" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9]+' 2>/dev/null |
    sed 's|.*/||' | sort -n || true)
[[ -n $model_versions ]] || die "no model version under $model_base_path; run make train first"
latest_version=$(tail -n 1 <<<"$model_versions")

install_tools
check_production_compose

# --- images ----------------------------------------------------------------

build_base_image
build_image gateway/Dockerfile "$GATEWAY_IMAGE"
build_image serving/Dockerfile.local "$MODEL_SERVER_IMAGE"

if podman run --rm "${LIMITS[@]}" --entrypoint python "$GATEWAY_IMAGE" -c \
    "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is not None)"; then
    pass "gateway image has no TensorFlow"
else
    fail "gateway image contains TensorFlow"
fi

# --- the stack ---------------------------------------------------------------

# A copy of the latest version, so that the test can add a version to the
# mounted directory without touching serving/models. Its mode lets the
# containers' unprivileged users read it.
models=$work/models
mkdir -p "$models/rps"
cp -r "$model_base_path/$latest_version" "$models/rps/$latest_version"
chmod -R a+rX "$work"

podman network create "$network" >/dev/null
log "network $network created"

# `serving` is the name the gateway image's RPS_MODEL_SERVER uses, as in
# docker-compose.yml.
podman run -d --name "$serving_container" --network "$network" --network-alias serving \
    "${LIMITS[@]}" -v "$models:/models:ro" "$MODEL_SERVER_IMAGE" >/dev/null

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
# Podman without systemd cannot schedule healthchecks and logs an error about
# it. The check below runs the image's HEALTHCHECK once by hand instead.
podman run -d --name "$gateway_container" --network "$network" --restart unless-stopped \
    "${LIMITS[@]}" -p "127.0.0.1:$port:5000" "$GATEWAY_IMAGE" >/dev/null 2>"$work/run.err" ||
    die "podman run $GATEWAY_IMAGE failed: $(cat "$work/run.err")"
log "gateway published on $url"

if wait_ready "$url" "" "$READY_TIMEOUT"; then
    pass "GET /readyz returns 200 within $READY_TIMEOUT s (model version $(ready_version "$url"))"
else
    fail "GET /readyz not 200 after $READY_TIMEOUT s (last status $(http_status "$url/readyz"))"
    exit 1
fi

wait_classify_available "$url" 15 || fail "/classify still returns 5xx 15 s after /readyz returned 200"
classify_samples "$url" "through the containers"

if podman healthcheck run "$gateway_container" >/dev/null 2>&1; then
    pass "the gateway image's HEALTHCHECK (/healthz) passes"
else
    fail "the gateway image's HEALTHCHECK (/healthz) fails"
fi

user_id=$(podman exec "$gateway_container" id -u)
if [[ $user_id != 0 ]]; then
    pass "gateway runs as a non-root user (uid $user_id)"
else
    fail "gateway runs as root"
fi

# --- restarts ----------------------------------------------------------------

# `podman kill`: podman 4.3 counts a kill as a stop by the user, which the
# `unless-stopped` policy does not undo, so the test starts the container again
# by hand when the policy did not. The log line records which happened.
before=$(container_run_id "$gateway_container")
podman kill "$gateway_container" >/dev/null
if wait_restarted "$gateway_container" "$before" 10; then
    log "after podman kill, the restart policy started the gateway again"
else
    log "after podman kill, the restart policy did not start the gateway; running podman start"
    podman start "$gateway_container" >/dev/null
fi
if wait_ready "$url" "" "$READY_TIMEOUT"; then
    pass "gateway ready again after podman kill"
    classify_samples "$url" "after podman kill"
else
    fail "gateway not ready within $READY_TIMEOUT s after podman kill"
fi

# A crash: SIGKILL to the gateway's main process (gunicorn's master) from the
# host. This is an exit the user did not ask for, so `unless-stopped` applies.
before=$(container_run_id "$gateway_container")
kill -KILL "$(podman inspect --format '{{.State.Pid}}' "$gateway_container")"
if wait_restarted "$gateway_container" "$before" "$RESTART_TIMEOUT"; then
    pass "restart policy restarted the gateway after its main process was killed"
else
    fail "restart policy did not restart the gateway within $RESTART_TIMEOUT s"
    podman start "$gateway_container" >/dev/null
fi
if wait_ready "$url" "" "$READY_TIMEOUT"; then
    classify_samples "$url" "after the crash"
else
    fail "gateway not ready within $READY_TIMEOUT s after the crash"
fi

# --- a new model version -------------------------------------------------------

# Copy under a name that is not a number, then rename, so the model server
# never loads a half-copied version directory.
new_version=$((latest_version + 1))
cp -r "$models/rps/$latest_version" "$models/rps/incoming-$new_version"
chmod -R a+rX "$models/rps/incoming-$new_version"
mv "$models/rps/incoming-$new_version" "$models/rps/$new_version"
if wait_ready "$url" "$new_version" "$VERSION_TIMEOUT"; then
    pass "version $new_version served without a restart, through the read-only mount"
    classify_samples "$url" "with version $new_version" "$new_version"
else
    fail "version $new_version not served within $VERSION_TIMEOUT s (readyz: $(ready_version "$url"))"
fi

log "$passed passed, $failed failed in $((SECONDS - started)) s"
echo "containers: $passed passed, $failed failed"
((failed == 0))
