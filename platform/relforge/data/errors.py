"""Errors and read reports of the data layer.

Every problem with an input file names the file, the record (a line number or
an id) and the field, so that a user can find and fix it. Records that a
reader skips by design are never dropped silently: they are counted, with the
reason, in a :class:`ReadReport`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """Base class of the data layer's errors."""


class DataFormatError(DataError):
    """A record in a data file is malformed.

    ``record`` is a line number (``"line 12"``) or an id (``"id 'x'"``);
    ``field`` the offending field (``"subj_end"``), when one is to blame.
    """

    def __init__(self, path: Path | str | None, message: str, *, record: str | None = None,
                 field: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.record = record
        self.field = field
        self.message = message
        where = [str(self.path) if self.path is not None else "<input>"]
        if record:
            where.append(record)
        if field:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}")


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file is missing; the message says where it was looked for and
    what to put there."""

    def __init__(self, path: Path, what: str, *, hint: str | None = None) -> None:
        self.path = Path(path)
        msg = f"data file not found: {self.path}\n  expected there: {what}"
        if hint:
            msg += f"\n  {hint}"
        super().__init__(msg)


@dataclass
class ReadReport:
    """What one read of one split did: files read, records seen, examples
    produced, and every skipped record counted by reason."""

    dataset: str
    split: str
    files: list[str] = field(default_factory=list)
    records: int = 0
    examples: int = 0
    skipped: Counter = field(default_factory=Counter)
    #: a few concrete skipped records per reason, for the user to inspect
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        samples = self.skipped_examples.setdefault(reason, [])
        if len(samples) < 5:
            samples.append(where)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        text = f"{self.dataset}/{self.split}: {self.records} records -> {self.examples} examples"
        if self.skipped:
            parts = [f"{n} {reason}" for reason, n in sorted(self.skipped.items())]
            text += f"; skipped {self.total_skipped} ({'; '.join(parts)})"
        return text
