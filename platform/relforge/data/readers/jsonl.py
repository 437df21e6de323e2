"""The generic JSON-lines format for users' own data (see relforge/data/README.md).

One JSON object a line::

    {"id": "s1", "text": "Ada Lovelace was born in London .",
     "head": {"start": 0, "end": 12, "type": "PER"},
     "tail": {"start": 25, "end": 31, "type": "LOC"},
     "relations": ["born_in"]}

``text`` and/or ``tokens``; entities by character offsets (``start``/``end``)
and/or token offsets (``token_start``/``token_end``), exclusive ends;
``relations`` (a list, empty for none) or ``relation`` (a string, or null).
Optional: ``id``, ``doc_id``, ``sent_id``, ``meta``; entity ``type`` and
``text`` (checked against the span). Any other key is an error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from relforge.data.errors import DataFormatError, ReadReport
from relforge.data.example import Entity, Example
from relforge.data.io import iter_jsonl, load_json
from relforge.data.readers.base import FileDataset, check_tokens
from relforge.data.text import char_to_token_span, token_char_offsets, tokenize_with_offsets

RECORD_KEYS = {"id", "text", "tokens", "head", "tail", "relations", "relation", "doc_id", "sent_id", "meta"}
ENTITY_KEYS = {"start", "end", "token_start", "token_end", "type", "text"}


def _align(text: str, tokens: list[str], path: Path, where: str) -> list[tuple[int, int]]:
    """Character spans of ``tokens`` found in order in ``text``."""
    offsets, pos = [], 0
    for k, tok in enumerate(tokens):
        at = text.find(tok, pos)
        if at < 0 or text[pos:at].strip():
            raise DataFormatError(path, f"token {k} ({tok!r}) does not follow token {k - 1} in the text",
                                  record=where, field="tokens")
        offsets.append((at, at + len(tok)))
        pos = at + len(tok)
    return offsets


def _int(ent: dict, key: str, path: Path, where: str, role: str) -> int | None:
    v = ent.get(key)
    if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
        raise DataFormatError(path, f"expected an integer, got {v!r}", record=where, field=f"{role}.{key}")
    return v


def record_id(rec: dict, path: Path, where: str, default_id: str) -> tuple[str, str]:
    """(the record's id, ``where`` naming it when the record gives one); an id
    that is not a string or an integer is a ``DataFormatError``."""
    rid = rec.get("id", default_id)
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        raise DataFormatError(path, f"expected a string, got {rid!r}", record=where, field="id")
    rid = str(rid)
    return rid, (f"{where} (id {rid!r})" if "id" in rec else where)


def parse_generic(rec: Any, path: Path, where: str, default_id: str, no_relation: str | None,
                  known: set[str] | None) -> Example:
    """One record of the generic JSON-lines format (relforge/data/README.md)
    as an :class:`Example`; anything wrong is a ``DataFormatError`` naming
    the file, the record and the field."""
    if not isinstance(rec, dict):
        raise DataFormatError(path, f"expected a JSON object, got {type(rec).__name__}", record=where)
    extra = sorted(set(rec) - RECORD_KEYS)
    if extra:
        raise DataFormatError(path, f"unknown key(s) {extra}; allowed: {sorted(RECORD_KEYS)} (put anything else "
                              f"under 'meta')", record=where, field=extra[0])
    rid, where = record_id(rec, path, where, default_id)
    text, tokens = rec.get("text"), rec.get("tokens")
    if text is None and tokens is None:
        raise DataFormatError(path, "missing field: give 'text' or 'tokens' (or both)", record=where, field="text")
    if text is not None and (not isinstance(text, str) or not text):
        raise DataFormatError(path, f"expected a non-empty string, got {text!r}", record=where, field="text")
    if tokens is not None:
        tokens = check_tokens(tokens, path, where, "tokens")
    raw = {role: _entity_fields(rec, role, text, tokens, path, where) for role in ("head", "tail")}
    # text and tokens with character spans for every token
    if text is None:
        text, offsets = token_char_offsets(tokens)
    elif tokens is None:
        bounds = [v for _, vals in raw.values() for v in (vals["start"], vals["end"]) if v is not None]
        tokens, offsets = tokenize_with_offsets(text, bounds)
    else:
        offsets = _align(text, tokens, path, where)
    head, tail = (_entity(role, *raw[role], text, tokens, offsets, path, where) for role in ("head", "tail"))
    rels = _relations(rec, no_relation, known, path, where)
    meta = rec.get("meta") or {}
    if not isinstance(meta, dict):
        raise DataFormatError(path, f"expected an object, got {meta!r}", record=where, field="meta")
    for key in ("doc_id", "sent_id"):
        if rec.get(key) is not None and not isinstance(rec[key], (str, int)):
            raise DataFormatError(path, f"expected a string, got {rec[key]!r}", record=where, field=key)
    return Example(id=rid, text=text, tokens=list(tokens), head=head, tail=tail,
                   relations=frozenset(r for r in rels if r != no_relation),
                   doc_id=str(rec["doc_id"]) if rec.get("doc_id") is not None else None,
                   sent_id=str(rec["sent_id"]) if rec.get("sent_id") is not None else None, meta=dict(meta))


def _entity_fields(rec: dict, role: str, text: str | None, tokens: list[str] | None, path: Path,
                   where: str) -> tuple[dict, dict[str, int | None]]:
    """The ``head``/``tail`` object and its checked integer fields."""
    ent = rec.get(role)
    if ent is None:
        raise DataFormatError(path, "missing field", record=where, field=role)
    if not isinstance(ent, dict):
        raise DataFormatError(path, f"expected an object, got {ent!r}", record=where, field=role)
    bad = sorted(set(ent) - ENTITY_KEYS)
    if bad:
        raise DataFormatError(path, f"unknown key(s) {bad}; allowed: {sorted(ENTITY_KEYS)}", record=where,
                              field=f"{role}.{bad[0]}")
    vals = {k: _int(ent, k, path, where, role) for k in ("start", "end", "token_start", "token_end")}
    has_char = vals["start"] is not None or vals["end"] is not None
    has_tok = vals["token_start"] is not None or vals["token_end"] is not None
    if has_char and (vals["start"] is None or vals["end"] is None):
        raise DataFormatError(path, "give both start and end", record=where, field=f"{role}.start")
    if has_tok and (vals["token_start"] is None or vals["token_end"] is None):
        raise DataFormatError(path, "give both token_start and token_end", record=where,
                              field=f"{role}.token_start")
    if not has_char and not has_tok:
        raise DataFormatError(path, "missing span: give start/end (characters) or token_start/token_end",
                              record=where, field=f"{role}.start")
    if has_char and text is None:
        raise DataFormatError(path, "character offsets need 'text'", record=where, field=f"{role}.start")
    if has_tok and tokens is None and text is not None and not has_char:
        raise DataFormatError(path, "token offsets need 'tokens'", record=where, field=f"{role}.token_start")
    if "type" in ent and ent["type"] is not None and not isinstance(ent["type"], str):
        raise DataFormatError(path, f"expected a string, got {ent['type']!r}", record=where, field=f"{role}.type")
    return ent, vals


def _entity(role: str, ent: dict, vals: dict[str, int | None], text: str, tokens: list[str],
            offsets: list[tuple[int, int]], path: Path, where: str) -> Entity:
    """The entity with its character and token spans, each derived from the
    other when only one is given, and both checked."""
    s, e, ts, te = vals["start"], vals["end"], vals["token_start"], vals["token_end"]
    if s is not None and not (0 <= s < e <= len(text)):
        raise DataFormatError(path, f"character span [{s}, {e}) out of range for a text of {len(text)} "
                              f"characters", record=where, field=f"{role}.end")
    if ts is not None and not (0 <= ts < te <= len(tokens)):
        raise DataFormatError(path, f"token span [{ts}, {te}) out of range for {len(tokens)} tokens",
                              record=where, field=f"{role}.token_end")
    if s is None:
        s, e = offsets[ts][0], offsets[te - 1][1]
    elif ts is None:
        span = char_to_token_span(offsets, s, e)
        if span is None:
            raise DataFormatError(path, f"character span [{s}, {e}) ({text[s:e]!r}) does not start and end "
                                  f"on token boundaries", record=where, field=f"{role}.start")
        ts, te = span
    elif (offsets[ts][0], offsets[te - 1][1]) != (s, e):
        raise DataFormatError(path, f"token span [{ts}, {te}) covers {text[offsets[ts][0]:offsets[te - 1][1]]!r} "
                              f"but the character span [{s}, {e}) covers {text[s:e]!r}", record=where,
                              field=f"{role}.token_start")
    if ent.get("text") is not None and ent["text"] != text[s:e]:
        raise DataFormatError(path, f"the span covers {text[s:e]!r}, not {ent['text']!r}", record=where,
                              field=f"{role}.text")
    return Entity(text=text[s:e], start=s, end=e, token_start=ts, token_end=te, type=ent.get("type"))


def _relations(rec: dict, no_relation: str | None, known: set[str] | None, path: Path, where: str) -> list[str]:
    """The record's labels (``relations`` list or one ``relation``), checked
    against the labels file when there is one."""
    if "relations" in rec and "relation" in rec:
        raise DataFormatError(path, "give 'relations' or 'relation', not both", record=where, field="relation")
    if "relations" in rec:
        rels = rec["relations"]
        if rels is None:
            rels = []
        if not isinstance(rels, list) or not all(isinstance(r, str) and r for r in rels):
            raise DataFormatError(path, f"expected a list of label strings, got {rels!r}", record=where,
                                  field="relations")
    elif "relation" in rec:
        rel = rec["relation"]
        if rel is not None and (not isinstance(rel, str) or not rel):
            raise DataFormatError(path, f"expected a label string or null, got {rel!r}", record=where,
                                  field="relation")
        rels = [rel] if rel is not None else []
    else:
        raise DataFormatError(path, "missing field: give 'relations' (a list, [] for none) or 'relation'",
                              record=where, field="relations")
    field = "relations" if "relations" in rec else "relation"
    if known is not None:
        for r in rels:
            if r not in known:
                raise DataFormatError(path, f"unknown label {r!r} (labels file: {', '.join(sorted(known))})",
                                      record=where, field=field)
    if no_relation is not None and no_relation in rels and len(rels) > 1:
        raise DataFormatError(path, f"{no_relation!r} (no relation) together with other relations {rels}",
                              record=where, field=field)
    return rels


class JsonlDataset(FileDataset):
    """Generic JSON lines (documented in relforge/data/README.md) for your own data."""

    name = "jsonl"
    subdir = "jsonl"
    metric = "micro_f1"
    split_files: ClassVar = {
        "train": ("train.jsonl", "generic JSON lines (see relforge/data/README.md)"),
        "dev": ("dev.jsonl", "generic JSON lines (see relforge/data/README.md)"),
        "test": ("test.jsonl", "generic JSON lines (see relforge/data/README.md)"),
    }

    class Settings(FileDataset.Settings):
        #: the label that means "no relation" (a pair with "relations": [] or "relation": null has it; a file
        #: may also spell it out). null: the data has no such pairs -- one that does is refused at load time
        no_relation: str | None = "no_relation"
        #: a JSON list of labels (or object label -> id), relative to the folder; optional
        labels_file: str = "labels.json"
        #: the metric: micro_f1 (single label), multilabel (pairs with several relations) or semeval
        metric: Literal["micro_f1", "multilabel", "semeval"] = "micro_f1"

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        self.no_relation = self.settings.no_relation
        self.metric = self.settings.metric

    def files(self) -> dict[str, tuple[str, str]]:
        # given `files` are the splits, exactly: a set without dev gets one carved from train
        if self.settings.files:
            return {split: (fname, "generic JSON lines (see relforge/data/README.md)")
                    for split, fname in self.settings.files.items()}
        return dict(self.split_files)

    def _labels_file(self, data_dir: Path | None) -> list[str] | None:
        p = self.root(data_dir) / self.settings.labels_file
        if not p.is_file():
            return None
        data = load_json(p)
        if isinstance(data, dict):
            return sorted(data, key=lambda k: data[k])
        if isinstance(data, list) and all(isinstance(x, str) for x in data):
            return list(data)
        raise DataFormatError(p, "expected a JSON list of labels or an object label -> id")

    def relation_labels(self, data_dir: Path | None) -> list[str]:
        given = self._labels_file(data_dir)
        if given is not None:
            return [x for x in given if x != self.no_relation]
        labels: set[str] = set()
        for split in self.splits():
            if self.split_available(split, data_dir):
                labels |= {r for ex in self.read(split, data_dir) for r in ex.relations}
        return sorted(labels)

    def _read(self, split: str, data_dir: Path | None, report: ReadReport) -> list[Example]:
        path = self.file(split, data_dir)
        report.files.append(str(path))
        given = self._labels_file(data_dir)
        known = set(given) | ({self.no_relation} if self.no_relation else set()) if given is not None else None
        out, seen = [], {}
        for lineno, rec in iter_jsonl(path):
            report.records += 1
            ex = parse_generic(rec, path, f"line {lineno}", f"{split}-{lineno}", self.no_relation, known)
            if not ex.relations and self.no_relation is None:
                raise DataFormatError(path, "a pair without relations, but the data set has no no-relation label "
                                      "(no_relation: null), so its label space cannot express it; set "
                                      "data.dataset.no_relation (default 'no_relation') or give the pair a relation",
                                      record=f"line {lineno}", field="relations")
            if ex.id in seen:
                raise DataFormatError(path, f"duplicate id {ex.id!r} (first on line {seen[ex.id]})",
                                      record=f"line {lineno}", field="id")
            seen[ex.id] = lineno
            out.append(ex)
        return out
