"""Whether the configured components can work together, decided when the
configuration is validated, before any weight is loaded.

Each component class declares the :class:`~relforge.components.Ability`
values it ``provides`` and the ones it ``requires`` of the component in
another configuration section (``{"model": {...}, "template": {...}}``),
possibly depending on its settings (``abilities(settings)``,
``requirements(settings)``). The model also declares the sections it
``uses`` and those it cannot do without (``needed_sections``), and, with
:class:`~relforge.components.HasParameterGroups`, its parameter group names.
Every problem is one line that names both parts and what is missing.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from relforge.components import COMPONENT_SECTIONS, LIST_SECTIONS, ComponentKind, HasParameterGroups

if TYPE_CHECKING:
    from relforge.config import RunConfig

#: sections a model may or may not use (the data set is read by the engine, not the model)
MODEL_SECTIONS = ("template", "loss", "decoder", "retriever")


def section_of(path: str) -> str:
    """``pretraining.2`` -> ``pretraining``; other paths are their own section."""
    head = path.split(".")[0]
    return head if head in LIST_SECTIONS else path


def kind_of(path: str) -> ComponentKind:
    return LIST_SECTIONS[section_of(path)] if section_of(path) in LIST_SECTIONS else COMPONENT_SECTIONS[path]


def check_compatibility(components: Mapping[str, tuple[str, BaseModel]], registry: Any, run: RunConfig) -> list[str]:
    """Problems (one line each) with the combination of ``components`` (key
    path -> (full name, validated settings)); empty when they fit."""
    classes = {path: registry.get(kind_of(path), name).factory for path, (name, _) in components.items()}
    label = {path: f"{kind_of(path).value} {name}" for path, (name, _) in components.items()}
    problems: list[str] = []
    if "model" not in components:
        # a partial configuration (shown, or merged into a suite later); training refuses it
        # (relforge.engine.build.model_class names the missing model)
        return problems
    model_cls, model_settings = classes["model"], components["model"][1]
    model_name = label["model"]
    for section in sorted(model_cls.needed_sections(model_settings)):
        if section not in components:
            problems.append(f"{section}: {model_name} needs a {section}; set `{section}=<name>` "
                            f"(see `relforge plugins`)")
    for path in components:
        if path in MODEL_SECTIONS and path not in model_cls.uses:
            problems.append(f"{path}: {model_name} does not use a {path}, so {label[path]} would be ignored; "
                            f"remove it ({path}=null) or pick a model that uses one")
    provided = {section_of(p): cls.abilities(components[p][1]) for p, cls in classes.items()
                if section_of(p) not in LIST_SECTIONS}
    for path, cls in classes.items():
        for target, needed in cls.requirements(components[path][1]).items():
            if target not in provided or target == path:
                continue
            missing = sorted((a for a in needed if a not in provided[target]), key=lambda a: a.name)
            if missing:
                problems.append(f"{path}: {label[path]} needs {'; '.join(a.value for a in missing)} from the "
                                f"{target}, which {label[target]} does not provide")
    lrs = run.train.group_learning_rates
    if lrs:
        names = frozenset(model_cls.group_names) if issubclass(model_cls, HasParameterGroups) else frozenset()
        unknown = sorted(set(lrs) - names)
        if unknown:
            problems.append(f"train.group_learning_rates: {model_name} has no parameter group(s) "
                            f"{', '.join(unknown)} (it has {', '.join(sorted(names)) or 'none'}); remove them "
                            f"(train.group_learning_rates=null clears all)")
    return problems
