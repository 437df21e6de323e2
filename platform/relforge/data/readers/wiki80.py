"""Wiki80 as GenPT ships it: TACRED-style JSON lists with inclusive ends.

Files under ``<data_dir>/wiki80``: ``train.json`` (44,800; not in the shared
data), ``dev.json`` and ``test.json`` (5,600 each, 70 per relation),
``rel2id.json`` (the 80 relation names) and GenPT's published K-shot splits
``k-shot/<K>-<seed>/{train,dev}.json``. Those K-shot files are splits of
their own (``8-13/train``) and are used for K-shot sampling when present.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from relforge.data.errors import DataFormatError, ReadReport
from relforge.data.example import Example
from relforge.data.io import load_json, load_label_index
from relforge.data.readers.base import FileDataset
from relforge.data.readers.tacred import parse_tacred_style

GENPT_SEEDS = (13, 21, 42, 87, 100)
GENPT_KS = (8, 16, 32)


def read_tacred_style_list(ds: FileDataset, path: Path, split: str, report: ReadReport, *, known: set[str] | None,
                           restore: bool = False) -> list[Example]:
    report.files.append(str(path))
    data = load_json(path)
    if not isinstance(data, list):
        raise DataFormatError(path, f"expected a JSON list of records, got {type(data).__name__}")
    if not data:
        raise DataFormatError(path, "the file holds no records")
    out = []
    for i, rec in enumerate(data):
        report.records += 1
        rid = rec.get("id") if isinstance(rec, dict) else None
        where = f"record {i}" + (f" (id {rid!r})" if rid is not None else "")
        out.append(parse_tacred_style(rec, path, where, example_id=str(rid) if rid is not None else f"{split}-{i}",
                                      known=known, no_relation=ds.no_relation, restore=restore, dataset=ds.name))
    return out


class Wiki80Dataset(FileDataset):
    """Wiki80 (80 Wikidata relations; GenPT's JSON with inclusive ends)."""

    name = "wiki80"
    subdir = "wiki80"
    no_relation = None
    metric = "micro_f1"
    split_files: ClassVar = {
        "train": ("train.json", "Wiki80 train.json (GenPT's 44,800-record train split)"),
        "dev": ("dev.json", "Wiki80 dev.json (5,600 records, 70 per relation)"),
        "test": ("test.json", "Wiki80 test.json (5,600 records, 70 per relation)"),
        **{f"{k}-{s}/{part}": (f"k-shot/{k}-{s}/{part}.json", f"GenPT's {k}-shot {part} split for seed {s}")
           for k in GENPT_KS for s in GENPT_SEEDS for part in ("train", "dev")},
    }

    def relation_labels(self, data_dir: Path | None) -> list[str]:
        p = self.root(data_dir) / "rel2id.json"
        if not p.is_file():
            from relforge.data.paths import require_file

            require_file(p, "Wiki80 rel2id.json (the 80 relation names -> ids)", dataset=self.name)
        return load_label_index(p, "relation -> id")

    def _read(self, split: str, data_dir: Path | None, report: ReadReport) -> list[Example]:
        known = set(self.relation_labels(data_dir))
        return read_tacred_style_list(self, self.file(split, data_dir), split, report, known=known)

    def predefined_kshot(self, k, seed, data_dir):
        tr, dv = f"{k}-{seed}/train", f"{k}-{seed}/dev"
        if self.split_available(tr, data_dir) and self.split_available(dv, data_dir):
            return self.read(tr, data_dir), self.read(dv, data_dir)
        return None
