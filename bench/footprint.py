"""The gateway's footprint: worker memory, import time and container image size."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from bench.processes import ROOT, child_pids
from bench.stats import summarize

# Same settings file the container test uses, so podman reads the same image store.
CONTAINERS_CONF = ROOT / "tests" / "containers" / "containers.conf"
GATEWAY_IMAGE = "localhost/rps-gateway:test"

_IMPORT_SNIPPET = (
    "import time; started = time.perf_counter(); import gateway.app; "
    "print(time.perf_counter() - started)"
)


def resident_kb(pid: int) -> int | None:
    """Return VmRSS of process `pid` in KiB, or None when it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else None


def gunicorn_memory(master_pid: int) -> dict:
    """Return VmRSS in MB of the gunicorn master and each of its workers."""
    workers = [resident_kb(pid) for pid in child_pids(master_pid)]
    return {
        "master_mb": (resident_kb(master_pid) or 0) / 1024.0,
        "workers_mb": [kb / 1024.0 for kb in workers if kb is not None],
    }


def import_seconds(repeats: int) -> dict:
    """Time `import gateway.app` in `repeats` fresh interpreters."""
    timings = []
    for _ in range(repeats):
        output = subprocess.run(
            [sys.executable, "-c", _IMPORT_SNIPPET],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        ).stdout
        timings.append(float(output.strip()))
    return summarize(timings)


def container_image() -> dict:
    """Return the size of the gateway test image from `podman images`, if it exists."""
    environment = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    try:
        completed = subprocess.run(
            ["podman", "images", "--format", "json"],
            capture_output=True, text=True, timeout=60, env=environment,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"measured": False, "reason": f"podman images failed: {error}"}
    if completed.returncode != 0:
        return {"measured": False,
                "reason": f"podman images exited with {completed.returncode}: "
                          f"{completed.stderr.strip()[:200]}"}

    for image in json.loads(completed.stdout or "[]"):
        if GATEWAY_IMAGE in (image.get("Names") or []):
            return {"measured": True, "image": GATEWAY_IMAGE,
                    "size_mb": image["Size"] / 1e6, "created": image.get("CreatedAt")}
    return {"measured": False,
            "reason": f"{GATEWAY_IMAGE} is not built on this machine "
                      "(make test-containers builds it)"}
