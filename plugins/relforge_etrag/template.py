"""The SuRE framing (Lu et al., 2022): RE as summarisation of the entity pair.

Source: ``The head entity is {subj} . The tail entity is {obj} . The type of
{subj} is {type} . The type of {obj} is {type} . {sentence}`` (the type
sentences are left out for untyped entities). Target: the relation's template
filled with the two mentions (``{subj} was born in {obj}``); no relation:
``{subj} has no known relations to {obj}``. Candidates: every label whose
template is type-compatible with the pair.

The relation templates come from the data layer's verbalizer
(``verbalizer.templates``); the engine binds them through
:class:`~relforge.components.BindsRelationTemplates` because a template
component only receives label words, and the model saves them with its
state. Unbound, a generic
``the relation between {subj} and {obj} is {words}`` is used.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from relforge.components import Ability, BindsRelationTemplates, RenderedExample, Settings, Template
from relforge.data.example import Example


def type_words(t: str | None) -> str:
    return (t or "").replace("_", " ").strip().lower()


class SureTemplate(Template, BindsRelationTemplates):
    """SuRE: a source stating the entities and their types, the relation template
    filled with the entities as target, type-compatible candidates."""

    name = "sure"
    provides = frozenset({Ability.TEXT_TARGETS, Ability.ENTITY_SPANS, Ability.RELATION_TEMPLATES})

    class Settings(Settings):
        no_relation_template: str = "{subj} has no known relations to {obj}"
        with_types: bool = True
        #: "train": a label is a candidate for a (head type, tail type) pair
        #: only if the training data has it with that pair (pairs never seen
        #: in training keep every label); "none": every label, always
        type_constraints: Literal["train", "none"] = "train"

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        self.templates: dict[str, str] = {}
        self.no_relation: str | None = None
        #: "head type|tail type" -> labels seen with that pair in training
        self.constraints: dict[str, list[str]] = {}

    def bind_relation_templates(self, templates: Mapping[str, str], no_relation: str | None) -> None:
        for lab, t in templates.items():
            if "{subj}" not in t or "{obj}" not in t:
                raise ValueError(f"the SuRE template of {lab!r} must contain {{subj}} and {{obj}}: {t!r}")
        self.templates, self.no_relation = dict(templates), no_relation

    def template_state(self) -> dict[str, Any]:
        return {"templates": self.templates, "no_relation": self.no_relation, "constraints": self.constraints}

    def load_template_state(self, state: Mapping[str, Any]) -> None:
        self.bind_relation_templates(state.get("templates", {}), state.get("no_relation"))
        self.constraints = {k: list(v) for k, v in state.get("constraints", {}).items()}

    def fit(self, examples: Sequence[Example]) -> None:
        """Learn the type constraints (``type_constraints: train``)."""
        if self.settings.type_constraints != "train":
            return
        seen: dict[str, set[str]] = {}
        for ex in examples:
            if ex.head.type and ex.tail.type:
                seen.setdefault(f"{ex.head.type}|{ex.tail.type}", set()).update(ex.relations)
        self.constraints = {key: sorted(labs) for key, labs in seen.items()}

    def template_for(self, label: str, words: str) -> str:
        if label == self.no_relation:
            return self.settings.no_relation_template
        return self.templates.get(label) or f"the relation between {{subj}} and {{obj}} is {words}"

    def allowed(self, example: Example, labels) -> list[str]:
        key = f"{example.head.type}|{example.tail.type}"
        if self.settings.type_constraints != "train" or key not in self.constraints:
            return list(labels)
        ok = set(self.constraints[key]) | {self.no_relation}
        return [lab for lab in labels if lab in ok]

    def render(self, example: Example, label_words: Mapping[str, str]) -> RenderedExample:
        subj, obj = example.head.text, example.tail.text
        pieces: list[str] = []
        spans: dict[str, tuple[int, int]] = {}

        def add(text: str, role: str | None = None) -> None:
            start = sum(len(p) + 1 for p in pieces)
            pieces.append(text)
            if role and role not in spans:
                spans[role] = (start, start + len(text))

        add("The head entity is")
        add(subj, "head")
        add(". The tail entity is")
        add(obj, "tail")
        add(".")
        if self.settings.with_types:
            for mention, etype in ((subj, example.head.type), (obj, example.tail.type)):
                if etype:
                    add(f"The type of {mention} is {type_words(etype)} .")
        add(example.text, "sentence")
        source = " ".join(pieces)
        unknown = sorted(r for r in example.relations if r not in label_words)
        if unknown:
            raise KeyError(f"example {example.id}: relation(s) {unknown} are not in the label space")
        candidates = {lab: self.template_for(lab, label_words[lab]).format(subj=subj, obj=obj)
                      for lab in self.allowed(example, label_words)}
        targets = [self.template_for(r, label_words[r]).format(subj=subj, obj=obj) for r in sorted(example.relations)]
        return RenderedExample(source=source, targets=targets, candidates=candidates,
                               extra={"head_span": spans["head"], "tail_span": spans["tail"],
                                      "sentence_span": spans["sentence"]})
