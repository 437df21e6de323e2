"""Atomic checkpoint folders.

A checkpoint is written into a temporary sibling folder and then swapped in
with renames, so an interruption at any moment leaves either the previous
complete checkpoint or the new complete one, never a half-written folder.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

STATE_FILE = "trainer_state.json"


def write_atomically(final: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir)`` and move ``tmp_dir`` to ``final``."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    return swap_in(tmp, final)


def _previous(final: Path) -> Path:
    """Where :func:`swap_in` keeps the previous ``final`` between its two renames."""
    return final.with_name(f".{final.name}.old")


def remove_folder(final: Path) -> None:
    """Remove the folder ``final`` and any previous one a crash left beside it."""
    for folder in (Path(final), _previous(Path(final))):
        shutil.rmtree(folder, ignore_errors=True)


def swap_in(tmp: Path, final: Path) -> Path:
    """Replace ``final`` by the complete folder ``tmp`` with two renames."""
    final = Path(final)
    old = _previous(final)
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(final: Path) -> Path | None:
    """The complete checkpoint at ``final``; if a crash happened between the
    two renames, the previous one (``.old``) is still complete."""
    final = Path(final)
    for candidate in (final, _previous(final)):
        if (candidate / STATE_FILE).exists():
            return candidate
    return None


def is_state_only(folder: Path) -> bool:
    """Whether the checkpoint ``folder`` holds the loop's state and nothing
    else (a finished run whose model is kept in ``best/``)."""
    return all(p.name == STATE_FILE for p in Path(folder).iterdir())


def read_state(folder: Path) -> dict:
    return json.loads((Path(folder) / STATE_FILE).read_text(encoding="utf-8"))


def write_state(folder: Path, state: dict) -> None:
    """Write the loop's state into ``folder``, replacing any earlier one atomically."""
    path = Path(folder) / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(state, indent=2, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def detach_links(folder: Path) -> int:
    """Give every file under ``folder`` that has other hard links (a logged
    MLflow model's weights link to a run's ``best/`` files) a copy of its
    own, swapped in by rename, so writing into the folder cannot change the
    other names' bytes. Returns the number of files detached."""
    n = 0
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_nlink > 1:
            tmp = path.with_name(f".{path.name}.detach-{os.getpid()}")
            try:
                shutil.copy2(path, tmp)
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            n += 1
    return n


def share_files(folder: Path) -> None:
    """Give every file under ``folder`` the permissions of a file the user
    creates (0666 less the umask), like any checkpoint: some writers (the
    safetensors files of ``save_pretrained``) leave their files 0600, which
    other users of a shared model folder cannot read."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    for path in [Path(folder), *Path(folder).rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
