"""Turn command-line arguments into image files and read them for upload."""

from collections.abc import Sequence
from pathlib import Path

from client.errors import UsageError

# Suffixes (lower case) a folder contributes, and the content type sent for each.
# They match the formats the gateway accepts (docs/api.md).
CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".gif": "image/gif",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}

# Sent for a file named explicitly whose suffix is not in CONTENT_TYPES, so that
# the gateway decides whether to accept it.
UNKNOWN_CONTENT_TYPE = "application/octet-stream"

# An upload as requests takes it in `files=`: (file name, content, content type).
Upload = tuple[str, bytes, str]


def resolve_images(arguments: Sequence[str], samples_dir: Path) -> list[Path]:
    """Expand files, folders and sample names into image paths, in argument order.

    A folder contributes its image files (a suffix in CONTENT_TYPES), sorted by
    name and without recursing. A file is used whatever its suffix. A bare name
    that is not an existing path is looked up in `samples_dir`. Raises
    UsageError for a name found nowhere and for a folder without image files.
    """
    images: list[Path] = []
    for argument in arguments:
        if not argument:
            raise UsageError("an image argument is empty; pass a file, a folder or a sample name")

        path = Path(argument)
        if path.is_dir():
            images.extend(_folder_images(path))
        elif path.exists():
            images.append(path)
        elif _is_bare_name(argument) and (samples_dir / argument).is_file():
            images.append(samples_dir / argument)
        else:
            raise UsageError(_not_found_message(argument, samples_dir))
    return images


def sample_names(samples_dir: Path) -> list[str]:
    """List the image file names in `samples_dir`, sorted, or none if it cannot be read."""
    try:
        entries = list(samples_dir.iterdir())
    except OSError:
        return []
    return sorted(entry.name for entry in entries if entry.suffix.lower() in CONTENT_TYPES)


def read_upload(path: Path) -> Upload:
    """Read an image file into an upload named after its base name."""
    try:
        content = path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from error

    content_type = CONTENT_TYPES.get(path.suffix.lower(), UNKNOWN_CONTENT_TYPE)
    return path.name, content, content_type


def _folder_images(folder: Path) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError as error:
        raise UsageError(f"cannot read folder {folder}: {error.strerror or error}") from error

    images = sorted(
        entry for entry in entries if entry.suffix.lower() in CONTENT_TYPES and entry.is_file()
    )
    if not images:
        suffixes = " ".join(CONTENT_TYPES)
        raise UsageError(f"{folder}: the folder contains no image files ({suffixes})")
    return images


def _is_bare_name(argument: str) -> bool:
    return argument == Path(argument).name and argument not in (".", "..")


def _not_found_message(argument: str, samples_dir: Path) -> str:
    if not _is_bare_name(argument):
        return f"{argument}: no such file or folder"

    samples = sample_names(samples_dir)
    available = f" (samples: {', '.join(samples)})" if samples else ""
    return (
        f"{argument}: no such file or folder, and no sample of that name in {samples_dir}"
        f"{available}"
    )
