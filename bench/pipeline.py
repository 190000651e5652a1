"""The in-process limit: decode, preprocess and the SavedModel signature in one process.

    python -m bench.pipeline --duration 5 --repeats 3

Runs in its own process because it imports TensorFlow, which the load
generator and the orchestrating process must not carry. Each measured step is
what the stack does for a request minus HTTP and gRPC: `gateway.preprocess`
on the PNG bytes of each image, np.stack, and one call of the
`serving_default` signature loaded with tf.saved_model.load. TensorFlow uses
its default thread pools (all CPUs). It also times the signature alone at
batch 1 on arrays preprocessed beforehand (the model call). The model is the
highest version under serving/models/rps, the one the model servers serve.
Prints one JSON object on stdout.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from bench.stats import percentile, summarize
from gateway.preprocess import preprocess
from serving.export import load_signature
from serving.model_paths import list_versions

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "client" / "samples").glob("*.png"))
MODEL_BASE_PATH = ROOT / "serving" / "models" / "rps"

# Unmeasured signature calls before the model-call timing, so that tracing and
# the first allocations stay out of it.
MODEL_CALL_WARMUP = 20


def run_batches(signature, images: list[bytes], size: tuple[int, int],
                batch: int, duration: float, max_steps: int) -> list[float]:
    """Classify batches of `batch` images for `duration` seconds; return each step's ms."""
    step_ms = []
    position = 0
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline and len(step_ms) < max_steps:
        chosen = [images[(position + i) % len(images)] for i in range(batch)]
        position += batch

        started = time.perf_counter()
        pixels = np.stack([preprocess(data, size) for data in chosen])
        signature(image=tf.constant(pixels))["scores"].numpy()
        step_ms.append((time.perf_counter() - started) * 1000.0)
    return step_ms


def time_model_calls(signature, images: list[bytes], size: tuple[int, int],
                     calls: int) -> list[float]:
    """Call the signature on one preprocessed image at a time; return each call's ms.

    Each timed call includes tf.constant on the uint8 [1, height, width, 3]
    array and .numpy() on the scores, but no decoding or resizing.
    """
    arrays = [preprocess(data, size)[np.newaxis] for data in images]
    for index in range(MODEL_CALL_WARMUP):
        signature(image=tf.constant(arrays[index % len(arrays)]))["scores"].numpy()

    call_ms = []
    for index in range(calls):
        pixels = arrays[index % len(arrays)]
        started = time.perf_counter()
        signature(image=tf.constant(pixels))["scores"].numpy()
        call_ms.append((time.perf_counter() - started) * 1000.0)
    return call_ms


def main(argv: list[str] | None = None) -> int:
    """Measure batch-1 latency and throughput per batch size; print JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,4,8,16,32")
    parser.add_argument("--max-steps", type=int, default=20_000, help="steps per repeat")
    parser.add_argument("--model-calls", type=int, default=300,
                        help="timed batch-1 signature calls per repeat for the model call")
    args = parser.parse_args(argv)

    version = max(list_versions(MODEL_BASE_PATH))
    load_started = time.perf_counter()
    signature = load_signature(MODEL_BASE_PATH / str(version))
    load_s = time.perf_counter() - load_started
    height, width = signature.structured_input_signature[1]["image"].shape[1:3]
    size = (int(height), int(width))
    images = [path.read_bytes() for path in SAMPLES]

    # Warm up: the first calls trace and allocate.
    for batch in (1, 32):
        run_batches(signature, images, size, batch, duration=1.0, max_steps=5)

    results = {"batch_sizes": {}}
    for batch in [int(value) for value in args.batch_sizes.split(",")]:
        throughputs, p50s, p99s = [], [], []
        for _ in range(args.repeats):
            step_ms = run_batches(signature, images, size, batch, args.duration, args.max_steps)
            throughputs.append(batch * len(step_ms) / (sum(step_ms) / 1000.0))
            p50s.append(percentile(step_ms, 0.50))
            p99s.append(percentile(step_ms, 0.99))
        results["batch_sizes"][str(batch)] = {
            "images_per_s": summarize(throughputs),
            "step_p50_ms": summarize(p50s),
            "step_p99_ms": summarize(p99s),
        }

    p50s, p99s = [], []
    for _ in range(args.repeats):
        call_ms = time_model_calls(signature, images, size, args.model_calls)
        p50s.append(percentile(call_ms, 0.50))
        p99s.append(percentile(call_ms, 0.99))
    results["model_call"] = {
        "calls_per_repeat": args.model_calls,
        "p50_ms": summarize(p50s),
        "p99_ms": summarize(p99s),
    }

    best = max(results["batch_sizes"].items(), key=lambda item: item[1]["images_per_s"]["median"])
    results.update(
        samples=[path.name for path in SAMPLES],
        model_version=version,
        input_size=list(size),
        model_load_s=load_s,
        tensorflow=tf.__version__,
        python=platform.python_version(),
        best_batch=int(best[0]),
        best_images_per_s=best[1]["images_per_s"],
        batch1_latency_ms=results["batch_sizes"].get("1", {}).get("step_p50_ms"),
    )
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
