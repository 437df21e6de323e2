"""The core's generic templates (registered by the ``relforge`` built-in plugin).

* ``infill``: GenPT-style text infilling: the relation goes into a sentinel
  slot of a handcrafted pattern; the target is the verbalized relation in
  sentinel form (``<extra_id_0> city of birth <extra_id_1>``).
* ``typed_markers``: Zhou and Chen (2021)'s typed entity markers with
  punctuation (``@ * person * Bill @ ... # ^ city ^ Seattle #``) for
  discriminative classifiers; it records where the two start markers are.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


from relforge.components import Ability, RenderedExample, Settings, Template
from relforge.data.example import Example


class InfillTemplate(Template):
    """GenPT-style infilling: ``{text} The relation between {head} and {tail} is <extra_id_0> .``"""

    name = "infill"

    class Settings(Settings):
        pattern: str = "{text} The relation between {head} and {tail} is {slot} ."
        slot_open: str = "<extra_id_0>"
        slot_close: str = "<extra_id_1>"
        #: state the entity types in the source (``{head} ({head_type})``)
        with_types: bool = False

    @property
    def special_tokens(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.settings.slot_open, self.settings.slot_close)

    def target(self, words: str) -> str:
        return f"{self.settings.slot_open} {words} {self.settings.slot_close}"

    def render(self, example: Example, label_words: Mapping[str, str]) -> RenderedExample:
        s = self.settings
        head, tail = example.head.text, example.tail.text
        if s.with_types:
            head = f"{head} ({_type_words(example.head.type)})" if example.head.type else head
            tail = f"{tail} ({_type_words(example.tail.type)})" if example.tail.type else tail
        source = s.pattern.format(text=example.text, head=head, tail=tail, slot=s.slot_open)
        candidates = {label: self.target(words) for label, words in label_words.items()}
        targets = [candidates[r] for r in sorted(example.relations) if r in candidates]
        unknown = sorted(r for r in example.relations if r not in candidates)
        if unknown:
            raise KeyError(f"example {example.id}: relation(s) {unknown} are not in the label space")
        return RenderedExample(source=source, targets=targets, candidates=candidates)


class TypedMarkerTemplate(Template):
    """Typed entity markers with punctuation: ``@ * type * subj @`` and ``# ^ type ^ obj #``."""

    name = "typed_markers"
    special_tokens: ClassVar[tuple[str, ...]] = ()
    # its targets are the raw labels, not verbalized text: a classifier's template only
    provides = frozenset({Ability.MARKER_OFFSETS})

    class Settings(Settings):
        head_marker: str = "@"
        head_type_marker: str = "*"
        tail_marker: str = "#"
        tail_type_marker: str = "^"
        #: used when an entity has no type
        unknown_type: str = "entity"
        lowercase_types: bool = True

    def render(self, example: Example, label_words: Mapping[str, str]) -> RenderedExample:
        s = self.settings
        pieces: list[str] = []
        starts: dict[str, int] = {}
        spans = sorted([("head", example.head), ("tail", example.tail)], key=lambda x: x[1].token_start)
        cursor = 0
        tokens = example.tokens
        for role, ent in spans:
            pieces.extend(tokens[cursor:ent.token_start])
            mark, tmark = (s.head_marker, s.head_type_marker) if role == "head" else (s.tail_marker,
                                                                                     s.tail_type_marker)
            etype = _type_words(ent.type) if ent.type else s.unknown_type
            if s.lowercase_types:
                etype = etype.lower()
            prefix = " ".join(pieces)
            starts[role] = len(prefix) + (1 if prefix else 0)
            pieces.extend([mark, tmark, etype, tmark, *tokens[ent.token_start:ent.token_end], mark])
            cursor = ent.token_end
        pieces.extend(tokens[cursor:])
        source = " ".join(pieces)
        targets = sorted(example.relations)
        return RenderedExample(source=source, targets=targets, candidates=dict(label_words),
                               extra={"head_start": starts["head"], "tail_start": starts["tail"]})


def _type_words(t: str | None) -> str:
    return (t or "").replace("_", " ").strip()
