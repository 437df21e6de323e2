"""Where data comes from.

A dataset name resolves to files under a *data directory*. The directory is
taken, first match wins, from

1. an explicit argument (the ``--data-dir`` CLI option, or the config key
   ``data.data_dir``),
2. the environment variable ``RELFORGE_DATA_DIR``.

A reader's own ``path`` setting (a folder) overrides both for that data set:
that is how licensed data (TACRED) is read from wherever the user keeps it.
The layout expected under the data directory is the one of the shared data
folder (see ``relforge/data/README.md``), so that folder works as-is.
"""
from __future__ import annotations

import os
from pathlib import Path

from relforge.data.errors import DataError, DataFileNotFoundError

ENV_VAR = "RELFORGE_DATA_DIR"


def resolve_data_dir(explicit: str | os.PathLike | None = None, *, required: bool = True) -> Path | None:
    """The data directory: ``explicit`` if given, else ``$RELFORGE_DATA_DIR``."""
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        source = "the given data directory"
    elif os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR]).expanduser()
        source = f"${ENV_VAR}"
    else:
        if required:
            raise DataError(f"no data directory given: pass --data-dir, set the config key data.data_dir, "
                            f"or set the environment variable {ENV_VAR}")
        return None
    if not path.is_dir():
        raise DataError(f"data directory {path} (from {source}) does not exist or is not a folder")
    return path


def dataset_root(data_dir: Path | None, subdir: str, override: str | None, dataset: str) -> Path:
    """The folder of one data set: its ``path`` setting if set (absolute, or
    relative to the data directory), else ``<data_dir>/<subdir>``."""
    if override:
        p = Path(override).expanduser()
        if not p.is_absolute():
            base = data_dir if data_dir is not None else resolve_data_dir(None, required=False)
            if base is not None:
                p = base / p
        return p
    base = data_dir if data_dir is not None else resolve_data_dir(None)
    return Path(base) / subdir


def require_file(path: Path, what: str, *, dataset: str, setting: str | None = None) -> Path:
    """``path`` if it is a file, else an error naming it and what belongs there."""
    if path.is_file():
        return path
    hint = f"(dataset {dataset!r}"
    hint += f"; to read it from elsewhere set {setting})" if setting else ")"
    raise DataFileNotFoundError(path, what, hint=hint)
