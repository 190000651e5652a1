"""Gateway CPU profiles from py-spy and per-stage timings from the gateway's log lines."""

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.stats import percentile

# Each py-spy stack is charged to the deepest frame that matches a rule, so a
# Pillow resize called from the route counts as "resize", not as "Flask".
# Rules match py-spy's "function (path:line)" frame text.
_CATEGORY_RULES = [
    ("resize", re.compile(r"^(Image\.)?(resize|reduce|_reduce) \(.*PIL/Image\.py")),
    ("decode (Pillow: open, decompress, RGBA onto white)",
     re.compile(r"PIL/|gateway/preprocess\.py")),
    ("serialization (NumPy to TensorProto and back)",
     re.compile(r"google/protobuf|gateway/messages\.py|numpy/")),
    ("RPC (gRPC client)", re.compile(r"grpc/|gateway/model_client\.py")),
    ("HTTP parsing (headers, multipart)",
     re.compile(r"werkzeug/(formparser|sansio/multipart|datastructures|wsgi)|"
                r"gunicorn/http/(parser|message|unreader|body)|gateway/uploads\.py")),
    ("reply (JSON, response, socket write)",
     re.compile(r"json|gunicorn/http/wsgi|werkzeug/wrappers/response|socket\.py|sendall")),
    ("logging and metrics", re.compile(r"logging/|prometheus_client|gateway/request_log\.py")),
    ("Flask and gunicorn dispatch", re.compile(r"flask/|werkzeug/|gunicorn/")),
]

_STAGE_PATTERN = re.compile(r"\[(?P<request_id>[^\]]+)\] POST \S+ 200 (?P<fields>.*)$")
_FIELD_PATTERN = re.compile(r"(\w+)_ms=([0-9.]+)")


def py_spy_path() -> str | None:
    """Return the py-spy executable beside this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(master_pid: int, seconds: float, output: Path) -> subprocess.Popen | None:
    """Start py-spy sampling the gunicorn master and its workers for `seconds`."""
    executable = py_spy_path()
    if executable is None:
        return None
    command = [
        executable, "record", "--pid", str(master_pid), "--subprocesses",
        "--duration", str(max(1, round(seconds))), "--rate", "200",
        "--format", "raw", "--output", str(output), "--nonblocking",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def categorize(raw_profile: Path) -> dict:
    """Sum py-spy's collapsed stacks into the categories of _CATEGORY_RULES."""
    totals: Counter = Counter()
    leaves: Counter = Counter()
    for line in raw_profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        totals[_category(frames)] += int(count)
        leaves[frames[-1]] += int(count)

    samples = sum(totals.values())
    return {
        "samples": samples,
        "shares": {name: count / samples for name, count in totals.most_common()} if samples else {},
        "top_leaf_frames": [[frame, count] for frame, count in leaves.most_common(12)],
    }


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in _CATEGORY_RULES:
            if pattern.search(frame):
                return name
    return "other (interpreter, threads, imports)"


def stage_timings(gateway_log: Path, request_id_prefix: str) -> dict:
    """Return p50 and mean of each `*_ms` field of the gateway's log lines for one phase."""
    stages: dict[str, list[float]] = {}
    for line in gateway_log.read_text(errors="replace").splitlines():
        match = _STAGE_PATTERN.search(line)
        if not match or not match.group("request_id").startswith(request_id_prefix + "-"):
            continue
        for name, value in _FIELD_PATTERN.findall(match.group("fields")):
            stages.setdefault(name, []).append(float(value))
    return {
        name: {"p50_ms": percentile(values, 0.5), "mean_ms": sum(values) / len(values),
               "n": len(values)}
        for name, values in stages.items()
    }
