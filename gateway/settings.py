"""The gateway's settings: defaults, then RPS_* environment variables, then overrides."""

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.preprocess import DEFAULT_MAX_PIXELS

MIB = 1024 * 1024

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """A setting has an invalid value; the message names the variable and the value."""


@dataclass(frozen=True)
class Settings:
    """Typed gateway settings, read once when the app is created."""

    model_server: str = "localhost:8500"
    model_name: str = "rps"
    rpc_timeout: float = 5.0
    max_upload_bytes: int = 20 * MIB
    max_files: int = 16
    max_pixels: int = DEFAULT_MAX_PIXELS
    metadata_ttl: float = 10.0
    log_level: str = "INFO"


def _parse_address(value: Any) -> str:
    text = str(value).strip()
    if not text or any(character.isspace() for character in text):
        raise ValueError("expected a gRPC target such as localhost:8500")
    return text


def _parse_name(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("expected a non-empty model name")
    return text


def _parse_finite_float(value: Any, allow_zero: bool) -> float:
    expected = "a number of 0 or more" if allow_zero else "a positive number"
    if isinstance(value, bool):
        raise ValueError(f"expected {expected}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected {expected}") from None
    in_range = number >= 0 if allow_zero else number > 0
    if not in_range or number == float("inf"):
        raise ValueError(f"expected {expected}")
    return number


def _parse_positive_float(value: Any) -> float:
    return _parse_finite_float(value, allow_zero=False)


def _parse_non_negative_float(value: Any) -> float:
    return _parse_finite_float(value, allow_zero=True)


def _parse_positive_int(value: Any) -> int:
    if isinstance(value, str):
        try:
            number = int(value.strip().replace("_", ""), 10)
        except ValueError:
            raise ValueError("expected a positive integer") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise ValueError("expected a positive integer")
    if number < 1:
        raise ValueError("expected a positive integer")
    return number


def _parse_log_level(value: Any) -> str:
    level = str(value).strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return level


# Field name -> (environment variable, parser with unit in the error message).
_SOURCES: dict[str, tuple[str, Callable[[Any], Any], str]] = {
    "model_server": ("RPS_MODEL_SERVER", _parse_address, ""),
    "model_name": ("RPS_MODEL_NAME", _parse_name, ""),
    "rpc_timeout": ("RPS_RPC_TIMEOUT", _parse_positive_float, "seconds"),
    "max_upload_bytes": ("RPS_MAX_UPLOAD_BYTES", _parse_positive_int, "bytes"),
    "max_files": ("RPS_MAX_FILES", _parse_positive_int, "files"),
    "max_pixels": ("RPS_MAX_PIXELS", _parse_positive_int, "pixels"),
    "metadata_ttl": ("RPS_METADATA_TTL", _parse_non_negative_float, "seconds"),
    "log_level": ("RPS_LOG_LEVEL", _parse_log_level, ""),
}


def _parse(field: str, source: str, value: Any) -> Any:
    _, parser, unit = _SOURCES[field]
    try:
        return parser(value)
    except ValueError as error:
        unit_text = f" ({unit})" if unit else ""
        raise SettingsError(
            f"invalid {source}{unit_text}: {value!r}; {error}"
        ) from None


def load_settings(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from the defaults, `environ` (default os.environ) and `overrides`.

    `overrides` uses the Settings field names and wins over the environment.
    Raises SettingsError naming the variable or field whose value is invalid.
    """
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})

    unknown = sorted(set(overrides) - set(_SOURCES))
    if unknown:
        raise SettingsError(
            f"unknown setting {', '.join(unknown)}; known settings: {', '.join(_SOURCES)}"
        )

    values: dict[str, Any] = {}
    for field, (variable, _, _) in _SOURCES.items():
        if field in overrides:
            values[field] = _parse(field, f"setting {field}", overrides[field])
        elif variable in environ:
            values[field] = _parse(field, variable, environ[variable])
    return dataclasses.replace(Settings(), **values)
