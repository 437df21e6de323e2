"""Label verbalization: label words and SuRE-style relation templates.

A :class:`Verbalizer` maps every label of a label space to words
(``per:city_of_birth`` -> ``person city of birth``) and to a relation
template (``{subj} was born in the city {obj}``). Each data set has a
default; a user override file (YAML or JSON) replaces entries::

    labels:                      # label -> words
      per:city_of_birth: birthplace city
    templates:                   # label -> template with {subj} and {obj}
      per:city_of_birth: "{subj} was born in {obj}"

(a flat ``label: words`` mapping is also accepted). Words must be unique
within a label space, and so must templates: a clash is an error, since two
labels that read the same cannot be told apart by a generative model.
"""
from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from relforge.data.errors import DataError
from relforge.data.io import read_text
from relforge.data.relation_templates import (CONLL04_TEMPLATES, NYT_TEMPLATES, SEMEVAL_TEMPLATES,
                                              TACRED_TEMPLATES, WIKI80_TEMPLATES)


class VerbalizerError(DataError):
    """A verbalization clash, an unknown label or a malformed override file."""


CONLL04_WORDS = {"Kill": "kill", "Live_In": "live in", "Located_In": "located in",
                 "OrgBased_In": "organization based in", "Work_For": "work for", "NA": "no relation"}
_TACRED_PREFIX = {"per": "person", "org": "organization"}


def tacred_words(label: str) -> str:
    if label == "no_relation":
        return "no relation"
    prefix, _, rest = label.partition(":")
    rest = rest.replace("stateorprovinces", "states or provinces").replace("stateorprovince", "state or province")
    rest = rest.replace("/", " or ").replace("_", " ")
    return f"{_TACRED_PREFIX.get(prefix, prefix)} {rest}".strip()


def semeval_words(label: str) -> str:
    m = re.fullmatch(r"(\w+)-(\w+)\((e[12]),(e[12])\)", label)
    if not m:
        return label.lower()
    a, b, first, _ = m.groups()
    return f"{a} {b}".lower() if first == "e1" else f"{b} {a}".lower()


def freebase_words(label: str) -> str:
    if label == "NA":
        return "no relation"
    parts = [p for p in label.split("/") if p]
    return " ".join(parts[-2:]).replace("_", " ")


def generic_words(label: str) -> str:
    return re.sub(r"[\s_:/\-]+", " ", label).strip().lower() or label


def _default_words(dataset: Any, labels: list[str], data_dir: Path | None) -> dict[str, str]:
    own = getattr(dataset, "default_label_words", None)
    if callable(own):
        return dict(own(labels, data_dir))
    name = getattr(dataset, "name", "")
    if name in ("tacred", "tacrev", "retacred"):
        fn = tacred_words
    elif name.startswith("semeval"):
        fn = semeval_words
    elif name.startswith("nyt"):
        fn = freebase_words
    elif name == "wiki80":
        return {lab: lab for lab in labels}
    elif name == "fewrel":
        names = dataset.pid2name(data_dir)
        return {lab: names.get(lab, lab) for lab in labels}
    elif name == "conll04":
        return {lab: CONLL04_WORDS.get(lab, generic_words(lab)) for lab in labels}
    else:
        fn = generic_words
    return {lab: fn(lab) for lab in labels}


def _default_templates(dataset: Any, labels: list[str], words: Mapping[str, str]) -> dict[str, str]:
    name = getattr(dataset, "name", "")
    table: Mapping[str, str] = {}
    if name in ("tacred", "tacrev", "retacred"):
        table = TACRED_TEMPLATES
    elif name.startswith("semeval"):
        table = SEMEVAL_TEMPLATES
    elif name.startswith("nyt"):
        table = NYT_TEMPLATES
    elif name == "conll04":
        table = CONLL04_TEMPLATES
    elif name in ("wiki80", "fewrel"):
        # FewRel labels are property ids; their words are the Wiki80 names
        table = {lab: WIKI80_TEMPLATES[words[lab]] for lab in labels if words.get(lab) in WIKI80_TEMPLATES}
    out = {}
    for lab in labels:
        out[lab] = table.get(lab) or f"the relation between {{subj}} and {{obj}} is {words[lab]}"
    return out


def _norm(s: str) -> str:
    return " ".join(s.casefold().split())


def check_unique(mapping: Mapping[str, str], what: str, sources: Mapping[str, str] | None = None) -> None:
    seen: dict[str, str] = {}
    for label, text in mapping.items():
        key = _norm(text)
        if key in seen:
            other = seen[key]
            src = ""
            if sources:
                src = f" ({other}: {sources.get(other, 'default')}; {label}: {sources.get(label, 'default')})"
            raise VerbalizerError(f"{what} clash: labels {other!r} and {label!r} both read {text!r}{src}; "
                                  f"verbalizations must be unique within a label set")
        seen[key] = label


def check_template(label: str, template: str, origin: str) -> None:
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    if fields != {"subj", "obj"}:
        raise VerbalizerError(f"{origin}: the template of {label!r} must use exactly the fields {{subj}} and "
                              f"{{obj}}, found {sorted(fields) or 'none'}: {template!r}")


@dataclass
class Verbalizer:
    """Label words and relation templates for one label space."""

    labels: list[str]
    words: dict[str, str]
    templates: dict[str, str]
    #: label -> where its words came from ("default" or the override file)
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for label in self.labels:
            if label not in self.words:
                raise VerbalizerError(f"label {label!r} has no verbalization")
            if label not in self.templates:
                raise VerbalizerError(f"label {label!r} has no template")
            check_template(label, self.templates[label], self.sources.get(label, "default"))
        check_unique({lab: self.words[lab] for lab in self.labels}, "verbalization", self.sources)
        check_unique({lab: self.templates[lab] for lab in self.labels}, "template", self.sources)
        self._by_words = {_norm(self.words[lab]): lab for lab in self.labels}

    def __getitem__(self, label: str) -> str:
        return self.words[label]

    def render(self, label: str, subj: str, obj: str) -> str:
        """The label's template filled with the two entity mentions."""
        return self.templates[label].format(subj=subj, obj=obj)

    def label_for(self, words: str) -> str | None:
        """The label whose verbalization is ``words`` (case and spacing ignored)."""
        return self._by_words.get(_norm(words))

    def to_dict(self) -> dict[str, Any]:
        return {"labels": {lab: self.words[lab] for lab in self.labels},
                "templates": {lab: self.templates[lab] for lab in self.labels}}


def load_override(path: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """(label words, templates) from an override file (YAML or JSON)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise VerbalizerError(f"verbalizer override file not found: {path}\n  expected there: a YAML or JSON "
                              f"mapping with `labels:` (label -> words) and/or `templates:` (label -> template)")
    text = read_text(path)
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise VerbalizerError(f"{path}: malformed {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") \
            from None
    if data is None:
        raise VerbalizerError(f"{path}: the file is empty")
    if not isinstance(data, dict):
        raise VerbalizerError(f"{path}: expected a mapping, got {type(data).__name__}")
    if set(data) <= {"labels", "templates"} and data:
        words, templates = data.get("labels") or {}, data.get("templates") or {}
    else:
        words, templates = data, {}
    for key, m in (("labels", words), ("templates", templates)):
        if not isinstance(m, dict):
            raise VerbalizerError(f"{path}: `{key}` must be a mapping label -> text, got {type(m).__name__}")
        for label, v in m.items():
            if not isinstance(v, str) or not v.strip():
                raise VerbalizerError(f"{path}: {key}.{label}: expected a non-empty string, got {v!r}")
    return {str(k): v for k, v in words.items()}, {str(k): v for k, v in templates.items()}


def build_verbalizer(dataset: Any, labels: Iterable[str], override: str | Path | None = None,
                     data_dir: Path | None = None) -> Verbalizer:
    """The data set's default verbalizer for ``labels``, with ``override`` applied."""
    labels = list(labels)
    words = _default_words(dataset, labels, data_dir)
    sources = {}
    over_words, over_templates = ({}, {})
    if override is not None:
        over_words, over_templates = load_override(override)
        for key, m in (("labels", over_words), ("templates", over_templates)):
            unknown = sorted(set(m) - set(labels))
            if unknown:
                raise VerbalizerError(f"{override}: {key}: unknown label(s) {unknown}; the labels are: "
                                      f"{', '.join(labels)}")
        words.update(over_words)
        sources = {lab: str(override) for lab in over_words}
    templates = _default_templates(dataset, labels, words)
    templates.update(over_templates)
    for lab in over_templates:
        check_template(lab, over_templates[lab], str(override))
    return Verbalizer(labels=labels, words=words, templates=templates, sources=sources)
