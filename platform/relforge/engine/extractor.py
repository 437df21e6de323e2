"""Prediction with a trained model, from Python and from the CLI.

    extractor = Extractor.from_pretrained("runs/cptuning-.../best")
    extractor.predict([{"text": "Ada was born in Paris .",
                        "head": {"start": 0, "end": 3, "type": "PER"},
                        "tail": {"start": 16, "end": 21, "type": "LOC"}}])

Inputs are :class:`~relforge.data.example.Example` objects, records of the
generic JSON-lines format (``relforge/data/README.md``), without relations,
or mention records (a text and its ``entities``; :mod:`relforge.data.mentions`)
of which every ordered pair (or the listed ``pairs``) is scored::

    extractor.predict([{"text": "Ada was born in Paris .",
                        "entities": [{"start": 0, "end": 3}, {"start": 16, "end": 21}]}])
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

    def to_pair_examples(self, rec: Example | Mapping[str, Any], *, path: str | Path = "<input>",
                         where: str = "record 1", default_id: str = "0") -> list[Example]:
        """The examples of one input: itself, or every pair of a mention
        record (:mod:`relforge.data.mentions`); a bad record or entity is a
        ``DataFormatError`` naming ``path``, ``where`` and the field."""
        from relforge.data.errors import DataFormatError
        from relforge.data.mentions import expand_mentions, is_mention_record, rename_entity_field

        if not is_mention_record(rec):
            return [self.to_example(rec, path=path, where=where, default_id=default_id)]
        out = []
        for pair in expand_mentions(dict(rec), Path(path), where, default_id):
            try:
                out.append(self.to_example(pair, path=path, where=where, default_id=default_id))
            except DataFormatError as exc:
                raise rename_entity_field(exc, pair["meta"]["pair"]) from exc
        return out

    def to_examples(self, records: Iterable[Example | Mapping[str, Any]]) -> list[Example]:
        return [ex for i, rec in enumerate(records)
                for ex in self.to_pair_examples(rec, where=f"record {i + 1}", default_id=str(i))]

    def predict(self, records: Sequence[Example | Mapping[str, Any]], *, batch_size: int = 32,
                top_k: int = 5) -> list[dict[str, Any]]:
        """One dict per scored pair (one per input, or one per pair of a
        mention record): id, head, tail, predicted ``relations`` (empty = no
        relation) and the ``top_k`` candidates with their scores; a mention
        record's pairs also carry ``record`` (its id) and ``pair`` (the head
        and tail entity indices)."""
        examples = self.to_examples(records)
        # prediction does not read gold labels: a record's own labels (known to the model or not) are
        # neither checked nor needed to rank
        unlabelled = [dataclasses.replace(ex, relations=frozenset()) if ex.relations else ex for ex in examples]
        rankings = self.model.rank(unlabelled, batch_size=batch_size)
        out = []
        for ex, ranking in zip(examples, rankings):
            relations = decide(ranking, self.model.no_relation, self.resolved.run.decision)
            row = {"id": ex.id, "head": ex.head.text, "tail": ex.tail.text, "relations": sorted(relations),
                   "scores": {c.label: round(float(c.score), 6) for c in ranking[:top_k]}}
            if "pair" in ex.meta and "record" in ex.meta:
                row["record"], row["pair"] = ex.meta["record"], list(ex.meta["pair"])
            out.append(row)
        return out
