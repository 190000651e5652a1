"""Run the whole benchmark in one go and write bench/results/latest.json and docs/benchmarks.md.

All parts run in one invocation so that the target ratios compare numbers
taken minutes apart on the same machine under the same background load.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import footprint, processes, profile, report
from bench.large_input import write_large_jpeg
from bench.processes import ROOT
from bench.stats import percentile, summarize

RESULTS = ROOT / "bench" / "results" / "latest.json"
REPORT = ROOT / "docs" / "benchmarks.md"
SAMPLES = sorted((ROOT / "client" / "samples").glob("*.png"))
STACK_CONCURRENCY = (1, 4, 8, 16)
CLASSROOM_CONCURRENCY = (1, 8)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse flags; each default can also be set with the BENCH_* variable named in --help."""
    quick = argv is not None and "--quick" in argv or argv is None and "--quick" in sys.argv

    def default(variable: str, normal: float, short: float) -> float:
        return float(os.environ.get(variable, short if quick else normal))

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 s phases, one repeat (numbers not meaningful)")
    parser.add_argument("--duration", type=float, default=default("BENCH_DURATION", 8, 2),
                        help="measured seconds per load phase (BENCH_DURATION, default 8)")
    parser.add_argument("--warmup", type=float, default=default("BENCH_WARMUP", 1, 0.5),
                        help="unmeasured seconds before each phase (BENCH_WARMUP, default 1)")
    parser.add_argument("--repeats", type=int, default=int(default("BENCH_REPEATS", 3, 1)),
                        help="repeats of each phase (BENCH_REPEATS, default 3)")
    parser.add_argument("--pipeline-duration", type=float,
                        default=default("BENCH_PIPELINE_DURATION", 4, 1),
                        help="seconds per batch size and repeat in-process "
                             "(BENCH_PIPELINE_DURATION, default 4)")
    parser.add_argument("--profile-duration", type=float,
                        default=default("BENCH_PROFILE_DURATION", 10, 3),
                        help="seconds of py-spy sampling under load (BENCH_PROFILE_DURATION)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results JSON path")
    parser.add_argument("--report", type=Path, default=REPORT, help="Markdown report path")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every part, compute the targets, write the JSON and the report."""
    args = parse_args(argv)
    started = time.monotonic()
    loadgen_cpu = sorted(os.sched_getaffinity(0))[-1]
    results: dict = {
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {key: value for key, value in vars(args).items()
                     if key not in ("results", "report")},
        "machine": machine_description(),
        "load_average_before": os.getloadavg(),
        "loadgen": {"pinned_cpu": loadgen_cpu, "cpus": len(os.sched_getaffinity(0))},
    }

    with tempfile.TemporaryDirectory(prefix="rps-bench-") as scratch_name:
        scratch = Path(scratch_name)
        log("in-process pipeline")
        results["pipeline"] = run_pipeline(args)
        results.update(run_stack(args, scratch, loadgen_cpu))
        log("classroom baseline")
        results["classroom"] = run_classroom(args, scratch, loadgen_cpu)

    log("import time and container image")
    results["footprint"]["import_gateway_app_s"] = footprint.import_seconds(5)
    results["footprint"]["container_image"] = footprint.container_image()
    results["load_average_after"] = os.getloadavg()
    results["targets"] = compute_targets(results)
    results["runtime_s"] = time.monotonic() - started

    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    args.report.write_text(report.render(results))
    log(f"wrote {args.results} and {args.report} in {results['runtime_s']:.0f} s")
    for target in results["targets"]:
        log(f"{'PASS' if target['passed'] else 'FAIL'} {target['name']}: "
            f"{target['value']:.3g} vs bound {target['bound']:.3g}")
    return 0


def log(message: str) -> None:
    """Print a progress line on stderr."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def machine_description() -> dict:
    """Describe the CPU, memory and software this run used."""
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": memory_kb / 1024 / 1024,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def run_pipeline(args: argparse.Namespace) -> dict:
    """Run bench.pipeline in its own process and return its JSON."""
    command = [
        sys.executable, "-m", "bench.pipeline",
        "--duration", str(args.pipeline_duration), "--repeats", str(args.repeats),
    ]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                               timeout=600, check=True)
    return json.loads(completed.stdout)


def run_load(url: str, image: Path, concurrency: int, args: argparse.Namespace,
             cpu: int, prefix: str, duration: float | None = None) -> dict:
    """Run one bench.loadgen phase pinned to `cpu` and return its JSON."""
    duration = args.duration if duration is None else duration
    command = [
        sys.executable, "-m", "bench.loadgen", "--url", url, "--file", str(image),
        "--concurrency", str(concurrency), "--duration", str(duration),
        "--warmup", str(args.warmup), "--cpu", str(cpu), "--request-id-prefix", prefix,
    ]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                               timeout=duration + args.warmup + 120, check=True)
    return json.loads(completed.stdout)


def run_phases(url: str, images: list[Path], concurrency: int, args: argparse.Namespace,
               cpu: int, prefix: str) -> dict:
    """Repeat a load phase, cycling the images, and summarize across repeats."""
    runs = [
        run_load(url, images[repeat % len(images)], concurrency, args, cpu,
                 f"{prefix}-r{repeat}")
        for repeat in range(args.repeats)
    ]
    latencies = [run["latencies_ms"] for run in runs]
    requests_measured = sum(run["completed"] for run in runs)
    return {
        "concurrency": concurrency,
        "throughput_rps": summarize([run["throughput_rps"] for run in runs]),
        "p50_ms": summarize([percentile(values, 0.50) for values in latencies]),
        "p95_ms": summarize([percentile(values, 0.95) for values in latencies]),
        "p99_ms": summarize([percentile(values, 0.99) for values in latencies]),
        "requests": requests_measured,
        "errors": sum(run["errors"] for run in runs),
        "error_examples": [example for run in runs for example in run["error_examples"]][:3],
        "loadgen_cpu_ms_per_request": 1000.0 * sum(run["loadgen_cpu_s"] for run in runs)
        / max(1, requests_measured),
    }


def warm_up(url: str, image: Path, count: int = 20) -> requests.Response:
    """Send `count` requests to warm channels, caches and the model; return the last reply."""
    with requests.Session() as session:
        for _ in range(count):
            with image.open("rb") as handle:
                reply = session.post(url, files={"file": handle}, timeout=30)
                reply.raise_for_status()
    return reply


def run_stack(args: argparse.Namespace, scratch: Path, cpu: int) -> dict:
    """Measure the gateway and model server: load levels, large input, profile, footprint."""
    model_log, gateway_log = scratch / "model_server.log", scratch / "gateway.log"
    log("starting the model server and the gateway")
    model_server, model_port = processes.start_model_server(model_log)
    gateway = None
    try:
        gateway, port, first_start_s = processes.start_gateway(gateway_log, model_port)
        url = f"http://127.0.0.1:{port}/classify"
        # The model server loads the highest version it finds, which can differ
        # from the one bench.pipeline measured if a version lands in between.
        served_model = warm_up(url, SAMPLES[0]).json()["predictions"][0]["model"]

        stack = {}
        for concurrency in STACK_CONCURRENCY:
            log(f"stack at concurrency {concurrency}")
            phase = run_phases(url, SAMPLES, concurrency, args, cpu, f"stack-c{concurrency}")
            phase["gateway_stages"] = profile.stage_timings(gateway_log, f"stack-c{concurrency}")
            stack[str(concurrency)] = phase

        log("large input: 12 MP JPEG and 300x300 PNG")
        large = run_large_inputs(url, args, scratch, cpu, gateway_log)

        log("profile under load")
        profiled = run_profile(url, args, scratch, cpu, gateway, gateway_log)

        memory = footprint.gunicorn_memory(gateway.pid)
        processes.stop(gateway)
        gateway = None

        log("gateway start-up time")
        start_times = [first_start_s]
        for attempt in range(2):
            extra, _, seconds = processes.start_gateway(scratch / f"start-{attempt}.log", model_port)
            processes.stop(extra)
            start_times.append(seconds)
    finally:
        if gateway is not None:
            processes.stop(gateway)
        processes.stop(model_server)

    return {
        "served_model": served_model,
        "stack": stack,
        "large_input": large,
        "profile": profiled,
        "footprint": {
            "gunicorn_after_load": memory,
            "start_to_healthz_s": summarize(start_times),
        },
    }


def run_large_inputs(url: str, args: argparse.Namespace, scratch: Path, cpu: int,
                     gateway_log: Path) -> dict:
    """Classify a 12 MP JPEG and a 300x300 PNG one at a time through the stack."""
    jpeg = write_large_jpeg(SAMPLES[0], scratch / "large-12mp.jpg")
    results = {"jpeg": jpeg, "png": {"path": str(SAMPLES[0]), "bytes": SAMPLES[0].stat().st_size}}
    for name, image in (("jpeg", Path(jpeg["path"])), ("png", SAMPLES[0])):
        phase = run_phases(url, [image], 1, args, cpu, f"large-{name}")
        phase["gateway_stages"] = profile.stage_timings(gateway_log, f"large-{name}")
        results[name].update(phase)
    return results


def run_profile(url: str, args: argparse.Namespace, scratch: Path, cpu: int,
                gateway, gateway_log: Path) -> dict:
    """Sample the gateway with py-spy while it serves concurrency 8."""
    raw = scratch / "gateway-profile.txt"
    recorder = profile.record(gateway.pid, args.profile_duration, raw)
    if recorder is None:
        return {"measured": False, "reason": "py-spy is not installed"}

    load = run_load(url, SAMPLES[1], 8, args, cpu, "profile",
                    duration=args.profile_duration + 1)
    _, errors = recorder.communicate(timeout=args.profile_duration + 60)
    if recorder.returncode != 0 or not raw.exists():
        return {"measured": False,
                "reason": f"py-spy exited with {recorder.returncode}: {errors.strip()[:300]}"}
    return {
        "measured": True,
        "tool": "py-spy record --subprocesses --rate 200 --nonblocking (active threads only)",
        "throughput_rps": load["throughput_rps"],
        "categories": profile.categorize(raw),
        "gateway_stages": profile.stage_timings(gateway_log, "profile"),
    }


def compute_targets(results: dict) -> list[dict]:
    """Compare this run's numbers with the targets, all as ratios within the run."""
    pipeline = results["pipeline"]
    stack = results["stack"]
    classroom = results["classroom"]
    limit_throughput = pipeline["best_images_per_s"]["median"]
    limit_latency = pipeline["batch1_latency_ms"]["median"]
    stack_c8 = stack["8"]["throughput_rps"]["median"]
    stack_p50 = stack["1"]["p50_ms"]["median"]
    classroom_throughput = max(level["throughput_rps"]["median"] for level in classroom["levels"].values())
    classroom_p50 = classroom["levels"]["1"]["p50_ms"]["median"]
    jpeg = results["large_input"]["jpeg"]["p50_ms"]["median"]
    png = results["large_input"]["png"]["p50_ms"]["median"]
    workers = results["footprint"]["gunicorn_after_load"]["workers_mb"]
    model_call = pipeline["model_call"]["p50_ms"]["median"]

    # Each key names the explanation bench/report.py gives when the target fails.
    targets = [
        ("stack_throughput_vs_limit",
         "stack throughput at concurrency 8 >= 0.7 x in-process best throughput",
         stack_c8, 0.7 * limit_throughput, "min", "requests/s"),
        ("stack_latency_vs_limit",
         "stack p50 at concurrency 1 <= 1.5 x in-process batch-1 latency",
         stack_p50, 1.5 * limit_latency, "max", "ms"),
        ("stack_throughput_vs_classroom",
         "stack throughput at concurrency 8 >= 5 x classroom best throughput",
         stack_c8, 5 * classroom_throughput, "min", "requests/s"),
        ("stack_latency_vs_classroom",
         "stack p50 at concurrency 1 <= 1/4 x classroom p50 at concurrency 1",
         stack_p50, classroom_p50 / 4, "max", "ms"),
        ("large_jpeg", "12 MP JPEG end to end p50 <= 3 x 300x300 PNG p50",
         jpeg, 3 * png, "max", "ms"),
        ("worker_memory", "largest gateway worker VmRSS < 80 MB",
         max(workers, default=float("nan")), 80.0, "max", "MB"),
        ("model_call",
         f"model call at batch 1 (version {pipeline['model_version']}) p50 <= 3 ms",
         model_call, 3.0, "max", "ms"),
    ]
    return [
        {
            "key": key, "name": name, "value": value, "bound": bound, "unit": unit,
            "kind": kind,
            "passed": value >= bound if kind == "min" else value <= bound,
            # Distance from the bound as a fraction of the bound. A positive
            # margin is headroom, and a negative one is how far the target is missed.
            "margin": (value - bound) / bound if kind == "min" else (bound - value) / bound,
        }
        for key, name, value, bound, kind, unit in targets
    ]


def run_classroom(args: argparse.Namespace, scratch: Path, cpu: int) -> dict:
    """Measure the classroom baseline at concurrency 1 and 8."""
    log_path = scratch / "classroom.log"
    server, port = processes.start_classroom(log_path)
    try:
        url = f"http://127.0.0.1:{port}/send_file"
        warm_up(url, SAMPLES[0], count=5)
        levels = {}
        for concurrency in CLASSROOM_CONCURRENCY:
            log(f"classroom baseline at concurrency {concurrency}")
            levels[str(concurrency)] = run_phases(url, SAMPLES, concurrency, args, cpu,
                                                  f"classroom-c{concurrency}")
    finally:
        processes.stop(server)
    check = [line for line in log_path.read_text().splitlines() if line.startswith("classroom:")]
    return {"levels": levels, "weights_check": check[0] if check else "not logged"}
