"""Raw text with entity mentions: one record, every ordered pair scored.

A mention record names a text (or tokens) and its entity mentions, instead of
one head and one tail::

    {"id": "s1", "text": "Ada Quill was born in Norport and met Bram Tolle there .",
     "entities": [{"start": 0, "end": 9, "type": "PER"},
                  {"start": 22, "end": 29, "type": "LOC"},
                  {"id": "bram", "start": 38, "end": 48}],
     "pairs": [[0, 1], ["bram", 1]]}

Each entity is an object of the generic format's ``head``/``tail`` fields
(``start``/``end`` and/or ``token_start``/``token_end``, optional ``type``
and ``text``) plus an optional ``id``. ``pairs`` (optional) lists the ordered
(head, tail) pairs to score, each entity named by its index in ``entities``
or by its ``id``; without it every ordered pair of two different entities is
scored (n (n - 1) pairs). :func:`expand_mentions` turns the record into one
generic record per pair, with the id ``<record id>/<head>-<tail>`` (indices)
and ``meta`` carrying ``record`` (the record's id) and ``pair`` ([head, tail]
indices), which :class:`~relforge.engine.extractor.Extractor` copies into its
predictions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from relforge.data.errors import DataFormatError
from relforge.data.readers.jsonl import record_id

#: the keys of a mention record (anything else is an error)
MENTION_KEYS = {"id", "text", "tokens", "entities", "pairs", "doc_id", "sent_id", "meta"}


def is_mention_record(rec: Any) -> bool:
    """Whether ``rec`` is a mention record (it has ``entities``) rather than a
    record of one head/tail pair."""
    return isinstance(rec, dict) and "entities" in rec


def _entity_index(ref: Any, ids: dict[str, int], n: int, path: Path, where: str, field: str) -> int:
    if isinstance(ref, bool) or not isinstance(ref, (int, str)):
        raise DataFormatError(path, f"expected an entity index or id, got {ref!r}", record=where, field=field)
    if isinstance(ref, str):
        if ref not in ids:
            known = ", ".join(repr(k) for k in ids) or "none: give the entities an 'id' or use indices"
            raise DataFormatError(path, f"no entity has id {ref!r} (ids: {known})", record=where, field=field)
        return ids[ref]
    if not 0 <= ref < n:
        raise DataFormatError(path, f"entity index {ref} is out of range: the record has {n} entities "
                                    f"(0 to {n - 1})", record=where, field=field)
    return ref


def expand_mentions(rec: dict, path: Path | str, where: str, default_id: str) -> list[dict[str, Any]]:
    """The generic records (one head/tail pair each) of a mention record, in
    the order of ``pairs`` (or of every ordered pair, head index first). The
    records are not parsed here: :func:`relforge.data.readers.jsonl.parse_generic`
    does that; :func:`rename_entity_field` maps its ``head``/``tail`` fields
    back to ``entities[i]``."""
    path = Path(path)
    extra = sorted(set(rec) - MENTION_KEYS)
    if extra:
        raise DataFormatError(path, f"unknown key(s) {extra} in a record with 'entities'; allowed: "
                                    f"{sorted(MENTION_KEYS)} (a record has either 'entities' or 'head' and "
                                    f"'tail')", record=where, field=extra[0])
    rid, where = record_id(rec, path, where, default_id)
    ents = rec["entities"]
    if not isinstance(ents, list) or len(ents) < 2:
        raise DataFormatError(path, f"expected a list of at least two entity mentions, got {ents!r}",
                              record=where, field="entities")
    ids: dict[str, int] = {}
    plain: list[dict[str, Any]] = []
    for i, ent in enumerate(ents):
        if not isinstance(ent, dict):
            raise DataFormatError(path, f"expected an object, got {ent!r}", record=where, field=f"entities[{i}]")
        ent = dict(ent)
        eid = ent.pop("id", None)
        if eid is not None:
            if not isinstance(eid, str) or not eid:
                raise DataFormatError(path, f"expected a non-empty string, got {eid!r}", record=where,
                                      field=f"entities[{i}].id")
            if eid in ids:
                raise DataFormatError(path, f"entity id {eid!r} is used twice (entities {ids[eid]} and {i})",
                                      record=where, field=f"entities[{i}].id")
            ids[eid] = i
        plain.append(ent)
    n = len(plain)
    if rec.get("pairs") is None:
        pairs = [(h, t) for h in range(n) for t in range(n) if h != t]
    else:
        given = rec["pairs"]
        if not isinstance(given, list) or not given:
            raise DataFormatError(path, f"expected a non-empty list of [head, tail] pairs, got {given!r}",
                                  record=where, field="pairs")
        pairs = []
        for j, pair in enumerate(given):
            if not isinstance(pair, list) or len(pair) != 2:
                raise DataFormatError(path, f"expected [head, tail], got {pair!r}", record=where,
                                      field=f"pairs[{j}]")
            h, t = (_entity_index(ref, ids, n, path, where, f"pairs[{j}]") for ref in pair)
            if h == t:
                raise DataFormatError(path, f"head and tail are the same entity ({h})", record=where,
                                      field=f"pairs[{j}]")
            pairs.append((h, t))
    meta = rec.get("meta") or {}
    if not isinstance(meta, dict):
        raise DataFormatError(path, f"expected an object, got {meta!r}", record=where, field="meta")
    base = {k: rec[k] for k in ("text", "tokens", "doc_id", "sent_id") if k in rec}
    return [{**base, "id": f"{rid}/{h}-{t}", "head": plain[h], "tail": plain[t],
             "meta": {**meta, "record": rid, "pair": [h, t]}} for h, t in pairs]


def rename_entity_field(exc: DataFormatError, pair: list[int]) -> DataFormatError:
    """``exc`` (from parsing an expanded pair) naming the mention record (its
    id, not the pair's) and ``entities[i]`` where it names the pair's
    ``head``/``tail`` field."""
    record = exc.record.replace(f"/{pair[0]}-{pair[1]}'", "'") if exc.record else exc.record
    field = exc.field
    for role, index in (("head", pair[0]), ("tail", pair[1])):
        if field and (field == role or field.startswith(role + ".")):
            field = f"entities[{index}]" + field[len(role):]
            break
    return DataFormatError(exc.path, exc.message, record=record, field=field)
