"""The `rps-classify` command: classify image files through the gateway and print the labels."""

import argparse
import json
import math
import os
import reprlib
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import requests

from client.errors import ClientError, GatewayFailed, UsageError
from client.gateway_api import classify
from client.images import CONTENT_TYPES, read_upload, resolve_images, sample_names

PROG = "rps-classify"
DEFAULT_URL = "http://localhost:5000"
URL_VARIABLE = "RPS_GATEWAY_URL"
DEFAULT_TIMEOUT = 30.0
# The gateway's default maximum number of files per request (its RPS_MAX_FILES).
DEFAULT_BATCH_SIZE = 16
# Below the gateway's default request limit of 20 MiB, leaving room for the
# multipart framing.
DEFAULT_BATCH_BYTES = 16 * 1024 * 1024
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
EXIT_INTERRUPTED = 130

# The note after the label of an uncertain prediction, by its `reason` (see docs/api.md).
UNCERTAIN_NOTES = {
    "no_hand": "uncertain: not a hand gesture",
    "low_confidence": "uncertain: not sure which gesture",
}

EXIT_STATUS_HELP = """\
exit status:
  0    every image was classified, including images the model flags as uncertain
  2    invalid arguments, or an image file or folder that is missing or unreadable
  3    the gateway cannot be reached, or did not reply within --timeout
  4    the gateway rejected the request (HTTP 4xx), for example a file that is not an image
  5    the gateway or the model server failed (HTTP 5xx), or the reply does not match the API
  130  interrupted (Ctrl-C)

Images are sent in order, in batches of at most --batch-size files and
--batch-bytes bytes. When a batch fails, the lines of the batches before it
stay printed, but --json prints nothing."""


@dataclass
class Environment:
    """Streams, environment variables and samples folder of one run, which tests replace."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    samples_dir: Path = SAMPLES_DIR


class _ArgumentParser(argparse.ArgumentParser):
    """An argument parser that writes to the run's Environment and raises UsageError."""

    def __init__(self, environment: Environment, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.environment = environment

    def print_help(self, file: TextIO | None = None) -> None:
        """Print the help text to the environment's stdout unless `file` is given."""
        super().print_help(file or self.environment.stdout)

    def print_usage(self, file: TextIO | None = None) -> None:
        """Print the usage line to the environment's stdout unless `file` is given."""
        super().print_usage(file or self.environment.stdout)

    def error(self, message: str) -> None:
        """Print the usage line to stderr and raise UsageError, which main() reports."""
        self.print_usage(self.environment.stderr)
        raise UsageError(message)


def main(argv: Sequence[str] | None = None, environment: Environment | None = None) -> int:
    """Classify the images named in `argv` and return the exit status."""
    environment = environment or Environment()
    try:
        return _run(argv, environment)
    except ClientError as error:
        # One line whatever the message contains, e.g. a multi-line gateway detail.
        message = " ".join(str(error).split())
        print(f"{PROG}: error: {message}", file=environment.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=environment.stderr)
        return EXIT_INTERRUPTED


def build_parser(environment: Environment) -> argparse.ArgumentParser:
    """Build the argument parser, writing help and errors to `environment`."""
    suffixes = " ".join(CONTENT_TYPES)
    parser = _ArgumentParser(
        environment,
        prog=PROG,
        description=(
            "Classify rock-paper-scissors images with the gateway's POST /classify\n"
            "and print one line per image."
        ),
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help=(
            f"an image file, a folder (its {suffixes} files, sorted, not recursive), "
            f"or the name of a bundled sample ({_sample_list(environment.samples_dir)})"
        ),
    )
    parser.add_argument(
        "--url",
        help=f"base URL of the gateway (default: ${URL_VARIABLE}, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=(
            "maximum time to connect and maximum time between bytes of the reply, "
            f"in seconds (default: {DEFAULT_TIMEOUT:g})"
        ),
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=(
            "maximum number of images per request; keep it at or below the gateway's "
            f"file limit (default: {DEFAULT_BATCH_SIZE})"
        ),
    )
    parser.add_argument(
        "--batch-bytes",
        type=_positive_int,
        default=DEFAULT_BATCH_BYTES,
        metavar="BYTES",
        help=(
            "maximum size of the images in one request, in bytes; a larger image "
            f"goes alone (default: {DEFAULT_BATCH_BYTES}, 16 MiB)"
        ),
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print the predictions as one JSON document {"predictions": [...]}',
    )
    return parser


def format_prediction(name: str, prediction: Mapping[str, Any]) -> str:
    """Format one prediction as `NAME: LABEL (99.2%), model rps v1, server time ...`.

    An uncertain prediction gets a note after the label, such as
    `NAME: LABEL (41.0%), uncertain: not a hand gesture, model rps v2, ...`.
    A prediction without the `uncertain` field, from a gateway older than that
    field, is formatted as confident. The server time keeps its UTC offset and
    drops fractions of a second. Raises GatewayFailed when a field that
    docs/api.md specifies is missing or invalid.
    """
    label = prediction.get("label")
    confidence = prediction.get("confidence")
    uncertain = prediction.get("uncertain", False)
    reason = prediction.get("reason")
    model = prediction.get("model")
    server_time = prediction.get("server_time")

    if not isinstance(label, str):
        raise _invalid_field(name, "label", label)
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool):
        raise _invalid_field(name, "confidence", confidence)
    if not isinstance(uncertain, bool):
        raise _invalid_field(name, "uncertain", uncertain)
    if reason is not None and not isinstance(reason, str):
        raise _invalid_field(name, "reason", reason)
    if not isinstance(model, dict) or "name" not in model or "version" not in model:
        raise _invalid_field(name, "model", model)
    try:
        sent_at = datetime.fromisoformat(server_time).replace(microsecond=0)
    except (TypeError, ValueError) as error:
        raise _invalid_field(name, "server_time", server_time) from error

    note = f"{_uncertain_note(reason)}, " if uncertain else ""
    return (
        f"{name}: {label} ({confidence * 100:.1f}%), {note}"
        f"model {model['name']} v{model['version']}, server time {sent_at}"
    )


def _uncertain_note(reason: str | None) -> str:
    if reason is None:
        return "uncertain"
    if reason in UNCERTAIN_NOTES:
        return UNCERTAIN_NOTES[reason]
    # A reason from a later model version, quoted by json.dumps so that
    # control characters cannot reach the terminal.
    return f"uncertain: reason {json.dumps(reason)}"


def _run(argv: Sequence[str] | None, environment: Environment) -> int:
    parser = build_parser(environment)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:
        # --help printed the help text and raised SystemExit.
        return exit_request.code if isinstance(exit_request.code, int) else 0

    url = _gateway_url(args.url, environment.environ)
    images = resolve_images(args.images, environment.samples_dir)

    all_predictions: list[dict[str, Any]] = []
    with requests.Session() as session:
        for batch in plan_batches(images, args.batch_size, args.batch_bytes):
            uploads = [read_upload(path) for path in batch]
            predictions = classify(session, url, uploads, args.timeout)

            if args.json:
                all_predictions.extend(predictions)
            else:
                for path, prediction in zip(batch, predictions):
                    print(format_prediction(path.name, prediction), file=environment.stdout)
                environment.stdout.flush()

    if args.json:
        print(json.dumps({"predictions": all_predictions}, indent=2), file=environment.stdout)
    return 0


def plan_batches(paths: Sequence[Path], max_files: int, max_bytes: int) -> list[list[Path]]:
    """Split `paths`, in order, into batches of at most `max_files` files and `max_bytes` bytes."""
    batches: list[list[Path]] = []
    batch: list[Path] = []
    batch_bytes = 0
    for path in paths:
        size = _file_size(path)
        if batch and (len(batch) == max_files or batch_bytes + size > max_bytes):
            batches.append(batch)
            batch, batch_bytes = [], 0
        batch.append(path)
        batch_bytes += size
    if batch:
        batches.append(batch)
    return batches


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from error


def _gateway_url(option: str | None, environ: Mapping[str, str]) -> str:
    """Return the gateway URL from --url, else the environment, else the default."""
    if option:
        url, source = option, "--url"
    elif environ.get(URL_VARIABLE):
        url, source = environ[URL_VARIABLE], URL_VARIABLE
    else:
        url, source = DEFAULT_URL, "the default"

    if not _is_base_url(url):
        raise UsageError(
            f"invalid gateway URL {url!r} from {source}; expected http://HOST[:PORT], "
            f"for example {DEFAULT_URL}"
        )
    return url.rstrip("/")


def _is_base_url(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # Raises ValueError for a port that is not a number from 0 to 65535.
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not parts.query
        and not parts.fragment
    )


def _sample_list(samples_dir: Path) -> str:
    names = sample_names(samples_dir)
    return ", ".join(names) if names else f"none found in {samples_dir}"


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return seconds


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return number


def _invalid_field(name: str, field_name: str, value: object) -> GatewayFailed:
    return GatewayFailed(
        f"the gateway's prediction for {name} has an invalid {field_name!r}: {reprlib.repr(value)}"
    )
