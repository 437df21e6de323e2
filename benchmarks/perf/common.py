"""What every script in benchmarks/perf/ prints beside its figures (imported as ``common``: the
scripts run as ``python benchmarks/perf/<name>.py``, which puts this folder on the path)."""
from __future__ import annotations

import subprocess
from pathlib import Path


def commit() -> str:
    """The short hash of the checked-out commit, or "?" outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or "?"
    except OSError:
        return "?"


def print_table(header: list[str], rows: list[list]) -> None:
    """A Markdown table on stdout."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")
