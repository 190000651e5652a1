"""Check docker-compose.yml and the TensorFlow Serving configs without running them.

    python3 check_configs.py compose RESOLVED.yml   # output of `docker-compose config`
    .venv/bin/python check_configs.py tfserving     # serving/tfserving/*.config

The tensorflow/serving image cannot be pulled on this project's machines, so
these checks stand in for starting it: the compose file must describe the
stack that docs/containers.md documents, and the text protos must parse as the
messages TensorFlow Serving reads. Prints one line per problem and exits 1 if
there is any. The `compose` mode needs PyYAML (Debian's python3-yaml, which
docker-compose depends on); the `tfserving` mode needs tensorflow-serving-api.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TFSERVING_DIR = ROOT / "serving" / "tfserving"
# Where docker-compose.yml mounts serving/tfserving in the serving container.
CONFIG_MOUNT = "/etc/tfserving"
# An exact release tag such as 2.21.0; `latest` or a bare 2.21 would drift.
PINNED_IMAGE = re.compile(r"^tensorflow/serving:\d+\.\d+\.\d+$")
REQUIRED_FLAGS = (
    "--model_config_file",
    "--enable_batching",
    "--batching_parameters_file",
    "--monitoring_config_file",
    "--file_system_poll_wait_seconds",
)
METRICS_PATH = "/monitoring/prometheus/metrics"


def parse_port(port: object) -> tuple[str, str, str]:
    """Return (host_ip, published, target) of a short- or long-syntax compose port."""
    if isinstance(port, dict):
        return (
            str(port.get("host_ip", "")),
            str(port.get("published", "")),
            str(port.get("target", "")),
        )
    text = str(port).split("/", 1)[0]
    parts = text.rsplit(":", 2)
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return "", "", parts[0]


def parse_volume(volume: object) -> tuple[str, str, bool]:
    """Return (source, target, read_only) of a short- or long-syntax compose volume."""
    if isinstance(volume, dict):
        return (
            str(volume.get("source", "")),
            str(volume.get("target", "")),
            bool(volume.get("read_only", False)),
        )
    parts = str(volume).split(":")
    options = parts[2].split(",") if len(parts) > 2 else []
    return parts[0], parts[1] if len(parts) > 1 else "", "ro" in options


def check_serving(service: dict) -> list[str]:
    """Return the problems of the `serving` service."""
    problems = []

    image = str(service.get("image", ""))
    if not PINNED_IMAGE.match(image):
        problems.append(f"serving: image {image!r} is not tensorflow/serving pinned to X.Y.Z")

    command = [str(part) for part in service.get("command") or []]
    flags = {part.split("=", 1)[0]: part.partition("=")[2] for part in command}
    for flag in REQUIRED_FLAGS:
        if flag not in flags:
            problems.append(f"serving: command lacks {flag}")
    for flag, value in flags.items():
        if value.startswith(CONFIG_MOUNT + "/"):
            local = TFSERVING_DIR / value.removeprefix(CONFIG_MOUNT + "/")
            if not local.is_file():
                problems.append(f"serving: {flag} names {value}, but {local} does not exist")

    volumes = {target: (source, read_only) for source, target, read_only in
               map(parse_volume, service.get("volumes") or [])}
    expected_sources = {"/models": "serving/models", CONFIG_MOUNT: "serving/tfserving"}
    for target, source_suffix in expected_sources.items():
        source, read_only = volumes.get(target, ("", False))
        if not source.rstrip("/").endswith(source_suffix):
            problems.append(f"serving: {target} is not mounted from ./{source_suffix}")
        elif not read_only:
            problems.append(f"serving: the mount at {target} is not read-only")

    for host_ip, published, target in map(parse_port, service.get("ports") or []):
        if published and host_ip != "127.0.0.1":
            problems.append(
                f"serving: port {target} is published on {host_ip or 'all addresses'}, "
                "not only on 127.0.0.1"
            )

    return problems


def check_gateway(service: dict) -> list[str]:
    """Return the problems of the `gateway` service."""
    problems = []

    build = service.get("build") or {}
    if not isinstance(build, dict) or build.get("dockerfile") != "gateway/Dockerfile":
        problems.append("gateway: not built from gateway/Dockerfile")
    elif Path(str(build.get("context", ""))).resolve() != ROOT:
        problems.append(f"gateway: build context {build.get('context')!r} is not the repository root")

    ports = [parse_port(port) for port in service.get("ports") or []]
    if not any(published == "5000" and target == "5000" for _, published, target in ports):
        problems.append("gateway: port 5000 is not published as 5000")

    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    if environment.get("RPS_MODEL_SERVER") != "serving:8500":
        problems.append("gateway: RPS_MODEL_SERVER is not serving:8500")

    if "serving" not in (service.get("depends_on") or {}):
        problems.append("gateway: does not depend on serving")

    return problems


def check_compose(path: Path) -> list[str]:
    """Return the problems of a compose file as `docker-compose config` prints it."""
    import yaml

    services = yaml.safe_load(path.read_text()).get("services") or {}
    problems = []
    if set(services) != {"serving", "gateway"}:
        problems.append(f"services are {sorted(services)}, expected gateway and serving")
    if "serving" in services:
        problems += check_serving(services["serving"])
    if "gateway" in services:
        problems += check_gateway(services["gateway"])
    for name, service in services.items():
        if service.get("restart") != "unless-stopped":
            problems.append(f"{name}: restart is not unless-stopped")
        if not (service.get("healthcheck") or {}).get("test"):
            problems.append(f"{name}: no healthcheck")
    return problems


def tfserving_message_classes() -> tuple[type, type]:
    """Build BatchingParameters and MonitoringConfig classes for text-format parsing.

    tensorflow-serving-api ships neither message. Text format matches fields by
    name and type only, so these declare the fields that serving/tfserving uses,
    with the names and types of TensorFlow Serving's session_bundle_config.proto
    and monitoring_config.proto. An unknown or misspelt field fails to parse.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    field = descriptor_pb2.FieldDescriptorProto
    schema = descriptor_pb2.FileDescriptorProto(
        name="rps_check_tfserving.proto",
        package="rps_check",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    batching = schema.message_type.add(name="BatchingParameters")
    names = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")
    for number, name in enumerate(names, start=1):
        batching.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                           type_name=".google.protobuf.Int64Value", label=field.LABEL_OPTIONAL)
    prometheus = schema.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    monitoring = schema.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=field.TYPE_MESSAGE,
                         type_name=".rps_check.PrometheusConfig", label=field.LABEL_OPTIONAL)

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(schema)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("rps_check.BatchingParameters")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("rps_check.MonitoringConfig")),
    )


def check_tfserving() -> list[str]:
    """Return the problems of serving/tfserving/*.config, parsed as TensorFlow Serving messages."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    from gateway.settings import Settings

    batching_class, monitoring_class = tfserving_message_classes()
    problems = []

    def parse(name: str, message):
        try:
            return text_format.Parse((TFSERVING_DIR / name).read_text(), message)
        except (OSError, text_format.ParseError) as error:
            problems.append(f"{name}: {error}")
            return None

    models = parse("models.config", model_server_config_pb2.ModelServerConfig())
    if models is not None:
        configs = list(models.model_config_list.config)
        if len(configs) != 1:
            problems.append(f"models.config: {len(configs)} models, expected 1")
        else:
            config = configs[0]
            if (config.name, config.base_path) != ("rps", "/models/rps"):
                problems.append("models.config: expected name rps and base_path /models/rps")
            policy = config.model_version_policy
            if policy.WhichOneof("policy_choice") != "latest" or policy.latest.num_versions != 1:
                problems.append("models.config: version policy is not latest { num_versions: 1 }")

    batching = parse("batching.config", batching_class())
    if batching is not None:
        # A Predict call with more images than max_batch_size fails with INVALID_ARGUMENT.
        if batching.max_batch_size.value < Settings.max_files:
            problems.append(
                f"batching.config: max_batch_size {batching.max_batch_size.value} is below "
                f"the gateway's default RPS_MAX_FILES {Settings.max_files}"
            )
        if batching.num_batch_threads.value < 1:
            problems.append("batching.config: num_batch_threads must be at least 1")

    monitoring = parse("monitoring.config", monitoring_class())
    if monitoring is not None:
        prometheus = monitoring.prometheus_config
        if not prometheus.enable or prometheus.path != METRICS_PATH:
            problems.append(f"monitoring.config: Prometheus is not enabled at {METRICS_PATH}")

    return problems


def main(argv: list[str]) -> int:
    """Run the check that argv[1] names and print its problems; return the exit status."""
    if len(argv) == 3 and argv[1] == "compose":
        problems = check_compose(Path(argv[2]))
    elif len(argv) == 2 and argv[1] == "tfserving":
        sys.path.insert(0, str(ROOT))
        problems = check_tfserving()
    else:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: check_configs.py compose RESOLVED.yml | check_configs.py tfserving",
              file=sys.stderr)
        return 2
    for problem in problems:
        print(f"check_configs: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
