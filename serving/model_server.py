"""The local model server, a development stand-in for TensorFlow Serving.

It serves one SavedModel over the part of TensorFlow Serving's gRPC API that
this project uses (Predict, GetModelMetadata, GetModelStatus), with the
official `tensorflow-serving-api` service definitions, where no container
engine can run the `tensorflow/serving` image: development, tests and CI. It is
not TensorFlow Serving: it has no REST API, batching, model config file,
version labels or monitoring, and it serves one model.

    python -m serving.model_server --port 8500 --model_name rps \\
        --model_base_path serving/models/rps

It takes TensorFlow Serving's flag names, as `--flag=value` or `--flag value`.
"""

import argparse
import logging
import os
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

from serving.model_paths import list_versions

# Under `python -m` this module is __main__, so the logger is named explicitly.
logger = logging.getLogger("serving.model_server")

DEFAULT_PORT = 8500
DEFAULT_HOST = "127.0.0.1"
DEFAULT_POLL_SECONDS = 2.0
DEFAULT_RPC_WORKERS = 4
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# Seconds that in-flight requests get to finish after SIGTERM or SIGINT. Docker
# sends SIGKILL 10 s after SIGTERM by default, so this stays below that.
STOP_GRACE_SECONDS = 5.0

EXIT_CODES = """\
exit codes:
  0  stopped by SIGTERM or SIGINT
  1  no model version could be loaded, or the address could not be bound
  2  invalid arguments
"""


class StartupError(Exception):
    """An error that stops the server from starting, with a one-line message."""


def main(argv: list[str] | None = None) -> int:
    """Serve the latest model version over gRPC until SIGTERM or SIGINT; return the exit code."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop_requested = install_signal_handlers()

    try:
        base_path = args.model_base_path.resolve()
        check_base_path(base_path)
        return serve(args, base_path, stop_requested)
    except StartupError as error:
        logger.error("%s", error)
        return 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line. argparse exits with code 2 on invalid arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.model_server",
        description="Serve a SavedModel over TensorFlow Serving's gRPC API "
        "(a development stand-in for TensorFlow Serving).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                        help="TCP port for gRPC, or 0 for any free port "
                        f"(default: {DEFAULT_PORT})")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="address to listen on, such as 0.0.0.0 in a container "
                        f"(default: {DEFAULT_HOST})")
    parser.add_argument("--model_name", required=True,
                        help="name that requests use for the model, such as rps")
    parser.add_argument("--model_base_path", type=Path, required=True,
                        help="directory that contains one numbered directory per version")
    parser.add_argument("--file_system_poll_wait_seconds", type=non_negative_float,
                        default=DEFAULT_POLL_SECONDS,
                        help="seconds between checks for a new version, or 0 to turn polling off "
                        f"(default: {DEFAULT_POLL_SECONDS:g})")
    parser.add_argument("--rpc_workers", type=positive_int, default=DEFAULT_RPC_WORKERS,
                        help="threads that handle requests "
                        f"(default: {DEFAULT_RPC_WORKERS})")
    parser.add_argument("--max_message_bytes", type=positive_int,
                        default=DEFAULT_MAX_MESSAGE_BYTES,
                        help="largest gRPC message to receive or send, in bytes "
                        f"(default: {DEFAULT_MAX_MESSAGE_BYTES}, 64 MiB)")
    return parser.parse_args(argv)


def check_base_path(base_path: Path) -> None:
    """Raise StartupError unless `base_path` contains at least one version directory."""
    if not base_path.is_dir():
        raise StartupError(f"the model base path {base_path} does not exist or is not a directory")
    try:
        versions = list_versions(base_path)
    except OSError as error:
        raise StartupError(f"cannot list the model base path {base_path}: {error}") from error
    if not versions:
        raise StartupError(
            f"no model version under {base_path}. Export a SavedModel to a numbered "
            f"directory such as {base_path / '1'}"
        )


def serve(args: argparse.Namespace, base_path: Path, stop_requested: threading.Event) -> int:
    """Load the latest version, then serve until `stop_requested` is set."""
    # TensorFlow's C++ INFO lines (CPU features, oneDNN) would clutter the request
    # log, so only its warnings and errors are shown.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    import grpc

    from serving.grpc_service import add_services
    from serving.versions import VersionManager

    manager = VersionManager(args.model_name, base_path, args.max_message_bytes)
    manager.load_latest()
    servable = manager.servable
    if servable is None:
        raise StartupError(
            f"no version of model {args.model_name} under {base_path} could be loaded "
            "(see the error above)"
        )
    if stop_requested.is_set():
        logger.info("stopped before serving, because a stop signal arrived during the load")
        return 0

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.rpc_workers, thread_name_prefix="rpc"),
        options=[
            ("grpc.max_send_message_length", args.max_message_bytes),
            ("grpc.max_receive_message_length", args.max_message_bytes),
            # gRPC sets SO_REUSEPORT by default, so a second server on the same
            # port would bind too, and the kernel would split connections between them.
            ("grpc.so_reuseport", 0),
        ],
    )
    add_services(server, manager)
    address = format_address(args.host, args.port)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise StartupError(f"cannot listen on {address}: another process may be using the port")

    server.start()
    logger.info(
        "local model server (a development stand-in for TensorFlow Serving) listening on %s, "
        "serving model %s version %d from %s",
        format_address(args.host, port), args.model_name, servable.version, base_path,
    )
    if args.file_system_poll_wait_seconds > 0:
        manager.start_polling(args.file_system_poll_wait_seconds)
    else:
        logger.info("polling for new versions is off")

    while not stop_requested.wait(timeout=1.0):
        pass

    logger.info("stopping, with up to %.0f s for in-flight requests to finish", STOP_GRACE_SECONDS)
    manager.stop_polling(timeout_seconds=STOP_GRACE_SECONDS)
    server.stop(STOP_GRACE_SECONDS).wait()
    logger.info("stopped")
    return 0


def install_signal_handlers() -> threading.Event:
    """Make SIGTERM and SIGINT set the returned event, for a graceful stop."""
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        logger.info("received %s", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop_requested


def format_address(host: str, port: int) -> str:
    """Join host and port, bracketing an IPv6 address as gRPC expects."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def port_number(text: str) -> int:
    """Parse a TCP port number from 0 to 65535 for argparse."""
    value = int_argument(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number from 0 to 65535")
    return value


def positive_int(text: str) -> int:
    """Parse an integer of at least 1 for argparse."""
    value = int_argument(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def non_negative_float(text: str) -> float:
    """Parse a number of at least 0 for argparse."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number of at least 0")
    return value


def int_argument(text: str) -> int:
    """Parse an integer for argparse."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not an integer") from None


if __name__ == "__main__":
    sys.exit(main())
