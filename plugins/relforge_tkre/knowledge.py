"""Prompts for the two kinds of generated knowledge, and the synthetic-example validator.

* Explanation-driven knowledge (EDKG): for one few-shot instance, the LLM
  explains why the subject has the relation with the object in the text.
* Schema-constrained data (SCDG): given the entity-type schema and a few
  demonstrations of one relation, the LLM writes new examples in the
  demonstrations' line format; a generated example is kept only if its
  relation is the requested one, both entity types are in the schema and both
  entity strings occur in its text.

The default prompt wording follows the paper and its public generation
scripts; every prompt is a ``str.format`` template that a configuration can
replace.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from relforge.components import Settings
from relforge.data.example import Entity, Example
from relforge.data.text import char_to_token_span, tokenize_with_offsets

EXPLANATION_PROMPT = ('Instruction: Take the text below and give an explanation of why the subject "{head}" '
                      'has the relation "{relation}" with the object "{tail}". {text}')

SYNTHETIC_HEADER = ("One sample in relation extraction datasets consists of a relation, a context, a pair of head "
                    "and tail entities in the context and their entity types. The head entity has the relation "
                    "with the tail entity and entities are pre-categorized as the following types: {types}. "
                    "Here are some samples for relation '{relation}':\n")
SYNTHETIC_HEADER_UNTYPED = ("One sample in relation extraction datasets consists of a relation, a context and a "
                            "pair of head and tail entities in the context. The head entity has the relation with "
                            "the tail entity. Here are some samples for relation '{relation}':\n")
SYNTHETIC_DEMO = ("Relation: {relation}. Context: {text} Head Entity: {head}. Head Type: {head_type}. "
                  "Tail Entity: {tail}. Tail Type: {tail_type}.\n")
SYNTHETIC_DEMO_UNTYPED = "Relation: {relation}. Context: {text} Head Entity: {head}. Tail Entity: {tail}.\n"
SYNTHETIC_REQUEST = "Generate {n} more samples like above for the relation '{relation}':"


class PromptSettings(Settings):
    explanation: str = EXPLANATION_PROMPT
    synthetic_header: str = SYNTHETIC_HEADER
    synthetic_header_untyped: str = SYNTHETIC_HEADER_UNTYPED
    synthetic_demo: str = SYNTHETIC_DEMO
    synthetic_demo_untyped: str = SYNTHETIC_DEMO_UNTYPED
    synthetic_request: str = SYNTHETIC_REQUEST
    #: how many synthetic examples one prompt asks for (the public scripts ask for eight)
    per_prompt: int = Field(8, gt=0)


def explanation_prompt(example: Example, relation: str, prompts: PromptSettings) -> str:
    return prompts.explanation.format(head=example.head.text, tail=example.tail.text, relation=relation,
                                      text=example.text)


def synthetic_prompt(relation: str, demos: Sequence[Example], types: Sequence[str] | None,
                     prompts: PromptSettings) -> str:
    typed = bool(types)
    header = (prompts.synthetic_header if typed else prompts.synthetic_header_untyped).format(
        types=", ".join(types or ()), relation=relation)
    lines = []
    for ex in demos:
        demo = prompts.synthetic_demo if typed else prompts.synthetic_demo_untyped
        lines.append(demo.format(relation=relation, text=ex.text, head=ex.head.text, tail=ex.tail.text,
                                 head_type=ex.head.type or "", tail_type=ex.tail.type or ""))
    return header + "".join(lines) + prompts.synthetic_request.format(n=prompts.per_prompt, relation=relation)


# --- parsing and validation ---------------------------------------------------

_FIELD = re.compile(r"(Relation|Context|Head Entity|Head Type|Tail Entity|Tail Type)\s*:", re.IGNORECASE)


def parse_synthetic_line(line: str) -> dict[str, str] | None:
    """``Relation: r. Context: text Head Entity: h. Head Type: T. Tail Entity: t. Tail Type: T.``
    -> its fields (lower-case snake keys), or None when the line has no
    ``Context`` and entity fields. Leading list numbering is ignored."""
    matches = list(_FIELD.finditer(line))
    if not matches:
        return None
    out: dict[str, str] = {}
    for m, nxt in zip(matches, matches[1:] + [None]):
        value = line[m.end(): nxt.start() if nxt is not None else len(line)].strip()
        key = m.group(1).lower().replace(" ", "_")
        if key != "context":
            value = value.rstrip(".").strip()
        out.setdefault(key, value.strip().strip('"').strip())
    if not {"context", "head_entity", "tail_entity"} <= out.keys():
        return None
    return out


@dataclass
class ValidationReport:
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    #: up to a few rejected lines per reason, for inspection
    samples: dict[str, list[str]] = field(default_factory=dict)

    def add_rejection(self, reason: str, line: str, keep: int = 5) -> None:
        self.rejected[reason] += 1
        self.samples.setdefault(reason, [])
        if len(self.samples[reason]) < keep:
            self.samples[reason].append(line[:500])

    def to_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "rejected": dict(self.rejected), "rejected_total": sum(self.rejected.values()),
                "samples": self.samples}


def _norm(s: str) -> str:
    return re.sub(r"[\s_]+", " ", s).strip().lower()


def _find(text: str, needle: str, avoid: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The first occurrence of ``needle`` in ``text`` (exact case first, then
    any case) that does not overlap ``avoid``."""
    if not needle:
        return None
    for hay, ndl in ((text, needle), (text.lower(), needle.lower())):
        start = hay.find(ndl)
        while start != -1:
            span = (start, start + len(ndl))
            if avoid is None or span[1] <= avoid[0] or span[0] >= avoid[1]:
                return span
            start = hay.find(ndl, start + 1)
    return None


class SyntheticValidator:
    """Keeps a generated example only if its relation is the requested one,
    both entity types are in the schema (when the data has types) and both
    entity strings occur in its text; every rejection is counted by reason."""

    REASONS = ("unparseable line", "wrong relation", "head type not in schema", "tail type not in schema",
               "missing entity type", "head entity not in text", "tail entity not in text",
               "duplicate text", "demonstration copied")

    def __init__(self, schema_types: Iterable[str] | None, *, demonstrations: Iterable[str] = ()) -> None:
        self.types = {_norm(t): t for t in (schema_types or ())}
        self.demos: set[str] = {_norm(t) for t in demonstrations}
        self.seen: set[str] = set()
        self.report = ValidationReport()

    def check(self, line: str, requested: str, *, example_id: str) -> Example | None:
        fields = parse_synthetic_line(line)
        if fields is None:
            if line.strip():
                self.report.add_rejection("unparseable line", line)
            return None
        relation = fields.get("relation", "")
        if _norm(relation) != _norm(requested):
            self.report.add_rejection("wrong relation", line)
            return None
        types = {}
        if self.types:
            for role in ("head", "tail"):
                t = fields.get(f"{role}_type")
                if not t:
                    self.report.add_rejection("missing entity type", line)
                    return None
                if _norm(t) not in self.types:
                    self.report.add_rejection(f"{role} type not in schema", line)
                    return None
                types[role] = self.types[_norm(t)]
        text = fields["context"]
        head = _find(text, fields["head_entity"])
        if head is None:
            self.report.add_rejection("head entity not in text", line)
            return None
        tail = _find(text, fields["tail_entity"], avoid=head)
        if tail is None:
            self.report.add_rejection("tail entity not in text", line)
            return None
        key = _norm(text)
        if key in self.demos:
            self.report.add_rejection("demonstration copied", line)
            return None
        if key in self.seen:
            self.report.add_rejection("duplicate text", line)
            return None
        self.seen.add(key)
        example = make_example(example_id, text, head, tail, types.get("head"), types.get("tail"), requested)
        self.report.kept += 1
        return example


def make_example(example_id: str, text: str, head: tuple[int, int], tail: tuple[int, int],
                 head_type: str | None, tail_type: str | None, relation: str) -> Example:
    tokens, offsets = tokenize_with_offsets(text, boundaries=[*head, *tail])
    ents = []
    for (a, b), etype in ((head, head_type), (tail, tail_type)):
        span = char_to_token_span(offsets, a, b)
        if span is None:  # pragma: no cover - boundaries are forced above
            raise ValueError(f"{example_id}: entity [{a}, {b}) does not map onto tokens")
        ents.append(Entity(text=text[a:b], start=a, end=b, token_start=span[0], token_end=span[1], type=etype))
    return Example(id=example_id, text=text, tokens=tokens, head=ents[0], tail=ents[1],
                   relations=frozenset({relation}), meta={"tkre_synthetic": True})
