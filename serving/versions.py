"""Keep the highest version of one model loaded, like TensorFlow Serving's latest-version policy.

A new version is loaded and warmed up while the old one keeps serving. Then
requests switch to it and the old one is unloaded. A version that fails to load
is skipped, and the version already loaded keeps serving.
"""

import logging
import threading
from pathlib import Path

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from serving.inference import ServingError, warm_up
from serving.model_paths import list_versions
from serving.servable import LoadError, Servable, load_servable

logger = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State

# A version directory that is still being copied fails to load, so a failed
# version is tried again at the next polls, up to this many attempts in all.
MAX_LOAD_ATTEMPTS = 5


class VersionManager:
    """The loaded version of one model, and the states of all versions seen."""

    def __init__(self, model_name: str, base_path: Path, max_input_bytes: int) -> None:
        self.model_name = model_name
        self.base_path = base_path
        self.max_input_bytes = max_input_bytes

        self._lock = threading.Lock()
        self._servable: Servable | None = None
        # Like TensorFlow Serving's ServableStateMonitor, this keeps every
        # version ever seen, including unloaded (END) and failed ones.
        self._statuses: dict[int, get_model_status_pb2.ModelVersionStatus] = {}
        self._failed_attempts: dict[int, int] = {}
        self._warned_no_versions = False

        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def servable(self) -> Servable | None:
        """The version serving requests, or None before the first load."""
        return self._servable

    def load_latest(self) -> bool:
        """Switch to the highest version if another one is serving; return whether it switched."""
        target = self._find_latest()
        current = self._servable
        if target is None or (current is not None and current.version == target):
            return False
        if self._failed_attempts.get(target, 0) >= MAX_LOAD_ATTEMPTS:
            return False

        with self._lock:
            self._set_status(target, State.LOADING)
        try:
            servable = load_servable(self.base_path, target)
            warm_up(servable, self.max_input_bytes)
        except LoadError as error:
            self._record_failure(target, str(error))
            return False
        except Exception as error:
            logger.exception("unexpected error while loading version %d", target)
            self._record_failure(target, f"{type(error).__name__}: {error}")
            return False

        with self._lock:
            previous = self._servable
            self._servable = servable
            self._failed_attempts.pop(target, None)
            self._set_status(target, State.AVAILABLE)
            if previous is not None:
                self._set_status(previous.version, State.END)

        if previous is None:
            logger.info(
                "loaded version %d of model %s from %s", target, self.model_name, servable.path
            )
        else:
            # The old version's memory is freed once its in-flight requests end.
            logger.info(
                "switched model %s from version %d to version %d and unloaded version %d",
                self.model_name, previous.version, target, previous.version,
            )
        return True

    def resolve(self, model_spec: model_pb2.ModelSpec) -> Servable:
        """Return the loaded version that `model_spec` names, or raise ServingError."""
        name = model_spec.name
        if not name:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."
            )

        choice = model_spec.WhichOneof("version_choice")
        if choice == "version_label":
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Unrecognized servable version label: {model_spec.version_label} "
                "(the local model server defines no version labels)",
            )

        servable = self._servable
        if choice == "version":
            request_text = f"Specific({name}, {model_spec.version.value})"
            found = servable is not None and servable.version == model_spec.version.value
        else:
            request_text = f"Latest({name})"
            found = servable is not None
        if not found or name != self.model_name:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request_text}"
            )
        return servable

    def version_statuses(
        self, model_name: str, version: int | None
    ) -> list[get_model_status_pb2.ModelVersionStatus]:
        """Return the status of `version`, or of every version seen, highest first."""
        with self._lock:
            statuses = dict(self._statuses) if model_name == self.model_name else {}

        if version is not None:
            if version not in statuses:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Could not find version {version} of model {model_name}",
                )
            return [statuses[version]]
        if not statuses:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {model_name}"
            )
        return [statuses[v] for v in sorted(statuses, reverse=True)]

    def start_polling(self, interval_seconds: float) -> None:
        """Look for a new version every `interval_seconds` in a background thread."""
        self._poller = threading.Thread(
            target=self._poll, args=(interval_seconds,), name="version-poller", daemon=True
        )
        self._poller.start()

    def stop_polling(self, timeout_seconds: float) -> None:
        """Stop the polling thread, waiting up to `timeout_seconds` for a load in progress."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout_seconds)

    def _poll(self, interval_seconds: float) -> None:
        while not self._stop.wait(interval_seconds):
            try:
                self.load_latest()
            except Exception:
                # Polling goes on, because the next poll may succeed.
                logger.exception("polling %s for new versions failed", self.base_path)

    def _find_latest(self) -> int | None:
        try:
            versions = list_versions(self.base_path)
        except OSError as error:
            versions = []
            reason = f"cannot list {self.base_path}: {error}"
        else:
            reason = f"no version directories under {self.base_path}"

        if versions:
            self._warned_no_versions = False
            return versions[-1]

        # NOTE: TensorFlow Serving unloads the model when its last version
        # directory disappears (unless --servable_versions_always_present is
        # set), but this server keeps serving the loaded version.
        if self._servable is not None and not self._warned_no_versions:
            logger.warning("%s. Still serving version %d", reason, self._servable.version)
            self._warned_no_versions = True
        elif self._servable is None:
            logger.error("%s", reason)
        return None

    def _record_failure(self, version: int, message: str) -> None:
        attempts = self._failed_attempts.get(version, 0) + 1
        self._failed_attempts[version] = attempts
        with self._lock:
            self._set_status(version, State.END, message)

        # Retries happen only while polling, not during the load at startup.
        attempt = ""
        outlook = []
        if self._poller is not None:
            attempt = f" (attempt {attempts} of {MAX_LOAD_ATTEMPTS})"
            if attempts < MAX_LOAD_ATTEMPTS:
                outlook.append("Will retry at the next poll.")
            else:
                outlook.append(f"Giving up on version {version} until the server restarts.")
        current = self._servable
        outlook.append(
            f"Still serving version {current.version}." if current else "No version is loaded."
        )
        logger.error(
            "failed to load version %d%s: %s. %s", version, attempt, message, " ".join(outlook)
        )

    def _set_status(self, version: int, state: int, error_message: str = "") -> None:
        # The caller holds self._lock.
        status = get_model_status_pb2.ModelVersionStatus(version=version, state=state)
        status.status.SetInParent()
        if error_message:
            status.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
            status.status.error_message = error_message
        self._statuses[version] = status
