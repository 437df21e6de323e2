"""Prediction with a trained model, from Python and from the CLI.

    extractor = Extractor.from_pretrained("runs/cptuning-.../best")
    extractor.predict([{"text": "Ada was born in Paris .",
                        "head": {"start": 0, "end": 3, "type": "PER"},
                        "tail": {"start": 16, "end": 21, "type": "LOC"}}])

Inputs are :class:`~relforge.data.example.Example` objects or records of the
generic JSON-lines format (``relforge/data/README.md``), without relations.
"""
from __future__ import annotations

import dataclasses

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from relforge.config import ResolvedConfig
from relforge.data.example import Example
from relforge.engine.decision import decide


class Extractor:
    def __init__(self, model, resolved: ResolvedConfig, meta: Mapping[str, Any]) -> None:
        self.model, self.resolved, self.meta = model, resolved, dict(meta)
        self.model.eval()

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device: str | None = None, registry=None) -> Extractor:
        from relforge.engine.build import load_saved

        model, resolved, meta = load_saved(folder, registry=registry)
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls(model, resolved, meta)

    @property
    def labels(self) -> list[str]:
        return list(self.model.labels)

    def to_example(self, rec: Example | Mapping[str, Any], *, path: str | Path = "<input>", where: str = "record 1",
                   default_id: str = "0") -> Example:
        """One input record as an :class:`Example` (the generic format); a bad
        record is a ``DataFormatError`` naming ``path`` and ``where``."""
        from relforge.data.readers.jsonl import parse_generic

        if isinstance(rec, Example):
            return rec
        rec = dict(rec) if isinstance(rec, Mapping) else rec
        if isinstance(rec, dict):
            rec.setdefault("relations", [])
        return parse_generic(rec, Path(path), where, default_id, self.model.no_relation, None)

    def to_examples(self, records: Iterable[Example | Mapping[str, Any]]) -> list[Example]:
        return [self.to_example(rec, where=f"record {i + 1}", default_id=str(i)) for i, rec in enumerate(records)]

    def predict(self, records: Sequence[Example | Mapping[str, Any]], *, batch_size: int = 32,
                top_k: int = 5) -> list[dict[str, Any]]:
        """One dict per input: id, head, tail, predicted ``relations`` (empty =
        no relation) and the ``top_k`` candidates with their scores."""
        examples = self.to_examples(records)
        # prediction does not read gold labels: a record's own labels (known to the model or not) are
        # neither checked nor needed to rank
        unlabelled = [dataclasses.replace(ex, relations=frozenset()) if ex.relations else ex for ex in examples]
        rankings = self.model.rank(unlabelled, batch_size=batch_size)
        out = []
        for ex, ranking in zip(examples, rankings):
            relations = decide(ranking, self.model.no_relation, self.resolved.run.decision)
            out.append({"id": ex.id, "head": ex.head.text, "tail": ex.tail.text, "relations": sorted(relations),
                        "scores": {c.label: round(float(c.score), 6) for c in ranking[:top_k]}})
        return out
