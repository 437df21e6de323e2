"""The one example schema every reader produces and every method consumes.

An example is one entity pair in one text with a *set* of gold relations, so
that pairs holding several relations (NYT's entity-pair overlap) are
first-class; an empty set means no relation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Entity:
    """An entity mention: character offsets into ``Example.text`` and token
    offsets into ``Example.tokens``, both with exclusive ends."""

    text: str
    start: int
    end: int
    token_start: int
    token_end: int
    type: str | None = None


@dataclass
class Example:
    id: str
    text: str
    tokens: list[str]
    head: Entity
    tail: Entity
    relations: frozenset[str] = field(default_factory=frozenset)
    doc_id: str | None = None
    sent_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.relations, frozenset):
            self.relations = frozenset(self.relations)

    @property
    def label(self) -> str | None:
        """The single gold relation, for single-label data; None when there is
        none, and an error when there are several."""
        if not self.relations:
            return None
        if len(self.relations) > 1:
            raise ValueError(f"example {self.id} holds {len(self.relations)} relations; use .relations")
        return next(iter(self.relations))

    # --- additions of the data layer (compatible: existing fields unchanged) ---

    @property
    def is_no_relation(self) -> bool:
        return not self.relations

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict in the generic JSON-lines format."""
        out: dict[str, Any] = {
            "id": self.id, "text": self.text, "tokens": list(self.tokens),
            "head": _entity_dict(self.head), "tail": _entity_dict(self.tail),
            "relations": sorted(self.relations),
        }
        if self.doc_id is not None:
            out["doc_id"] = self.doc_id
        if self.sent_id is not None:
            out["sent_id"] = self.sent_id
        if self.meta:
            out["meta"] = self.meta
        return out

    def check(self) -> list[str]:
        """Consistency problems of this example's spans (empty when sound)."""
        problems = []
        for role, ent in (("head", self.head), ("tail", self.tail)):
            if not (0 <= ent.start < ent.end <= len(self.text)):
                problems.append(f"{role}: character span [{ent.start}, {ent.end}) out of range "
                                f"for a text of {len(self.text)} characters")
            elif self.text[ent.start:ent.end] != ent.text:
                problems.append(f"{role}: text[{ent.start}:{ent.end}] is "
                                f"{self.text[ent.start:ent.end]!r}, not {ent.text!r}")
            if self.tokens and not (0 <= ent.token_start < ent.token_end <= len(self.tokens)):
                problems.append(f"{role}: token span [{ent.token_start}, {ent.token_end}) out of range "
                                f"for {len(self.tokens)} tokens")
        return problems


def _entity_dict(e: Entity) -> dict[str, Any]:
    d: dict[str, Any] = {"text": e.text, "start": e.start, "end": e.end,
                         "token_start": e.token_start, "token_end": e.token_end}
    if e.type is not None:
        d["type"] = e.type
    return d
