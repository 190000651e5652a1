"""Find the version directories under a model base path.

A model base path contains one directory per version, named by a decimal
integer (`serving/models/rps/1/`), as TensorFlow Serving expects. Other entries,
such as `cards/`, are ignored. This module does not import TensorFlow, so that
the local model server reports a wrong path before spending seconds on that.
"""

from pathlib import Path


def list_versions(base_path: Path) -> list[int]:
    """List the version numbers under `base_path`, lowest first; raise OSError if unreadable."""
    versions = []
    for entry in base_path.iterdir():
        if entry.is_dir() and entry.name.isascii() and entry.name.isdigit():
            versions.append(int(entry.name))
    return sorted(versions)
