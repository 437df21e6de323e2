"""CoNLL04 in the SpERT JSON format.

A JSON list of sentences ``{tokens, entities: [{type, start, end}],
relations: [{type, head, tail}], orig_id}``: entity ``end`` is exclusive and
``head``/``tail`` index the sentence's entities. One example per ordered
entity pair that holds a relation (with the set of its relations); with
``na_pairs`` every other ordered pair of entities too, without relation.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from relforge.data.errors import DataFormatError, ReadReport
from relforge.data.example import Example
from relforge.data.io import load_json, load_label_index
from relforge.data.readers.base import FileDataset, check_span, check_tokens, require
from relforge.data.text import entity_from_tokens, token_char_offsets

CONLL04_RELATIONS = ("Kill", "Live_In", "Located_In", "OrgBased_In", "Work_For")


class CoNLL04Dataset(FileDataset):
    """CoNLL04 (SpERT JSON; entity pairs from the gold entities)."""

    name = "conll04"
    subdir = "conll04"
    no_relation = "NA"
    metric = "multilabel"
    split_files: ClassVar = {
        "train": ("train_triples.json", "CoNLL04 train in SpERT format (922 sentences)"),
        "dev": ("dev_triples.json", "CoNLL04 dev in SpERT format (231 sentences)"),
        "test": ("test_triples.json", "CoNLL04 test in SpERT format (288 sentences)"),
    }

    class Settings(FileDataset.Settings):
        #: add a no-relation example for every ordered pair of entities without a relation
        na_pairs: bool = False

    def relation_labels(self, data_dir: Path | None) -> list[str]:
        p = self.root(data_dir) / "rel2idx.json"
        if p.is_file():
            return load_label_index(p, "relation -> index")
        return list(CONLL04_RELATIONS)

    def labels(self, data_dir: Path | None = None) -> list[str]:
        return ([self.no_relation] if self.settings.na_pairs else []) + self.relation_labels(data_dir)

    def _read(self, split: str, data_dir: Path | None, report: ReadReport) -> list[Example]:
        path = self.file(split, data_dir)
        report.files.append(str(path))
        data = load_json(path)
        if not isinstance(data, list) or not data:
            raise DataFormatError(path, "expected a non-empty JSON list of sentences")
        known = set(self.relation_labels(data_dir))
        out = []
        duplicates = 0
        for i, rec in enumerate(data):
            oid = rec.get("orig_id") if isinstance(rec, dict) else None
            where = f"record {i}" + (f" (orig_id {oid})" if oid is not None else "")
            report.records += 1
            tokens = check_tokens(require(rec, "tokens", list, path, where), path, where, "tokens")
            text, offsets = token_char_offsets(tokens)
            ents = []
            for j, ent in enumerate(require(rec, "entities", list, path, where)):
                f = f"entities[{j}]"
                s = require(ent, "start", int, path, f"{where}, {f}")
                e = require(ent, "end", int, path, f"{where}, {f}")
                check_span(s, e, len(tokens), path, where, f"{f}.end")
                ents.append(entity_from_tokens(text, offsets, s, e, type=ent.get("type")))
            pairs: dict[tuple[int, int], set[str]] = {}
            for j, rel in enumerate(require(rec, "relations", list, path, where)):
                f = f"relations[{j}]"
                h = require(rel, "head", int, path, f"{where}, {f}")
                t = require(rel, "tail", int, path, f"{where}, {f}")
                for name, idx in (("head", h), ("tail", t)):
                    if not 0 <= idx < len(ents):
                        raise DataFormatError(path, f"entity index {idx} out of range ({len(ents)} entities)",
                                              record=where, field=f"{f}.{name}")
                label = self._check_label(rel.get("type"), known, path, where, f"{f}.type")
                rels = pairs.setdefault((h, t), set())
                duplicates += label in rels
                rels.add(label)
            todo = list(pairs.items())
            if self.settings.na_pairs:
                todo += [((h, t), set()) for h in range(len(ents)) for t in range(len(ents))
                         if h != t and (h, t) not in pairs]
            for (h, t), rels in todo:
                meta = {"dataset": self.name, "record": i, "head_index": h, "tail_index": t}
                if oid is not None:
                    meta["orig_id"] = oid
                out.append(Example(id=f"{split}-{i}-{h}-{t}", text=text, tokens=tokens, head=ents[h], tail=ents[t],
                                   relations=frozenset(rels), sent_id=f"{split}-{i}", meta=meta))
        if duplicates:
            report.notes.append(f"{duplicates} repeated relation(s) merged (a pair's relations are a set)")
        return out
