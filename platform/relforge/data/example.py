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
