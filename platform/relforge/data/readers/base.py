"""The base of every file-based reader: file resolution, reports, validation."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from relforge.components import Dataset
from relforge.components import Settings as _BaseSettings
from relforge.data.errors import DataError, DataFormatError, ReadReport
from relforge.data.example import Example
from relforge.data.paths import dataset_root, require_file

log = logging.getLogger("relforge.data")


class FileDataset(Dataset):
    """A data set stored as one file per split under ``<data_dir>/<subdir>``.

    Subclasses set ``name``, ``subdir``, ``split_files`` (split -> file name
    relative to the data set's folder, and what that file holds), ``metric``
    and implement :meth:`_read`. After each :meth:`read`, ``reports[split]``
    holds its :class:`ReadReport`.
    """

    subdir: ClassVar[str] = ""
    #: split -> (file relative to the data set's folder, description of its content)
    split_files: ClassVar[dict[str, tuple[str, str]]] = {}
    #: other names of splits: alias -> split
    split_aliases: ClassVar[dict[str, str]] = {}
    #: the metric that scores this data set (see relforge.data.metrics.METRICS)
    metric: ClassVar[str] = "micro_f1"
    #: the default verbalizer's table, when the data set has one
    default_words: ClassVar[Mapping[str, str]] = {}

    class Settings(_BaseSettings):
        #: the data set's folder; absolute, or relative to the data directory.
        #: Default: ``<data_dir>/<subdir>``
        path: str | None = None
        #: split -> file name relative to the folder, overriding the defaults
        files: dict[str, str] = {}

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        self.reports: dict[str, ReadReport] = {}

    # ---- files ---------------------------------------------------------------

    def files(self) -> dict[str, tuple[str, str]]:
        out = dict(self.split_files)
        for split, fname in self.settings.files.items():
            out[split] = (fname, out.get(split, ("", f"the {split} split in this data set's format"))[1])
        return out

    def splits(self) -> list[str]:
        return list(self.files())

    def canonical_split(self, split: str) -> str:
        split = self.split_aliases.get(split, split)
        if split not in self.files():
            raise DataError(f"dataset {self.name!r} has no split {split!r}; "
                            f"it has: {', '.join(self.splits())}")
        return split

    def has_split(self, split: str) -> bool:
        return self.split_aliases.get(split, split) in self.files()

    def root(self, data_dir: Path | None) -> Path:
        return dataset_root(data_dir, self.subdir, self.settings.path, self.name)

    def file(self, split: str, data_dir: Path | None) -> Path:
        split = self.canonical_split(split)
        fname, what = self.files()[split]
        return require_file(self.root(data_dir) / fname, what, dataset=self.name,
                            setting=f"data.dataset.path (its folder) or data.dataset.files.{split} (this file)")

    def split_available(self, split: str, data_dir: Path | None) -> bool:
        if not self.has_split(split):
            return False
        try:
            self.file(split, data_dir)
        except (DataError, FileNotFoundError):
            return False
        return True

    # ---- reading ---------------------------------------------------------------

    def read(self, split: str, data_dir: Path | None = None) -> list[Example]:
        split = self.canonical_split(split)
        report = ReadReport(dataset=self.name, split=split)
        examples = self._read(split, data_dir, report)
        report.examples = len(examples)
        self.reports[split] = report
        if report.skipped:
            log.warning("%s", report.summary())
        return examples

    def _read(self, split: str, data_dir: Path | None, report: ReadReport) -> list[Example]:
        raise NotImplementedError

    # ---- labels --------------------------------------------------------------------

    def relation_labels(self, data_dir: Path | None) -> list[str]:
        """The relation labels without the no-relation label."""
        raise NotImplementedError

    def labels(self, data_dir: Path | None = None) -> list[str]:
        rels = self.relation_labels(data_dir)
        return ([self.no_relation] if self.no_relation else []) + [r for r in rels if r != self.no_relation]

    # ---- helpers for subclasses -------------------------------------------------------

    def _check_label(self, label: Any, known: set[str] | None, path: Path, where: str, field: str) -> str:
        if not isinstance(label, str) or not label:
            raise DataFormatError(path, f"expected a non-empty string, got {label!r}", record=where, field=field)
        if known is not None and label not in known:
            raise DataFormatError(path, f"unknown label {label!r} (the {self.name} labels are: "
                                  f"{', '.join(sorted(known))})", record=where, field=field)
        return label

    def _relations(self, label: str) -> frozenset[str]:
        return frozenset() if label == self.no_relation else frozenset([label])

    def predefined_kshot(self, k: int, seed: int, data_dir: Path | None) -> tuple[list[Example], list[Example]] | None:
        """Published K-shot (train, dev) files for (k, seed), if the data set ships them."""
        return None


def require(rec: Any, key: str, types: type | tuple[type, ...], path: Path, where: str) -> Any:
    """``rec[key]``, checked to exist and to have one of ``types``."""
    if not isinstance(rec, dict):
        raise DataFormatError(path, f"expected a JSON object, got {type(rec).__name__}", record=where)
    if key not in rec:
        raise DataFormatError(path, "missing field", record=where, field=key)
    value = rec[key]
    allowed = types if isinstance(types, tuple) else (types,)
    # bool is an int in Python, but `true` is never a valid offset
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        names = "/".join(t.__name__ for t in allowed)
        raise DataFormatError(path, f"expected {names}, got {value!r}", record=where, field=key)
    return value


def check_tokens(tokens: Any, path: Path, where: str, field: str = "token") -> list[str]:
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise DataFormatError(path, "expected a non-empty list of strings", record=where, field=field)
    return tokens


def check_span(start: int, end: int, n: int, path: Path, where: str, field: str) -> None:
    """[start, end) must be a non-empty span inside n tokens."""
    if not (0 <= start < end <= n):
        raise DataFormatError(path, f"span [{start}, {end}) out of range for {n} tokens", record=where, field=field)
