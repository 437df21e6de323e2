"""Building the configured model (fresh, or from a saved folder): the one
place that turns a resolved configuration into an :class:`REModel`."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from relforge.components import BindsRelationTemplates, ComponentKind, ModelParts
from relforge.config import ConfigError, ResolvedConfig, validate_config
from relforge.engine.models import META_FILE, read_meta

#: configuration sections that only training needs: a saved model loads without them
TRAINING_ONLY = ("loss", "pretraining")


def create_component(registry, resolved: ResolvedConfig, path: str):
    """The component configured at ``path`` (``template``, ``loss``, ...)."""
    from relforge.components import COMPONENT_SECTIONS

    name, settings = resolved.components[path]
    return registry.create(COMPONENT_SECTIONS[path], name, settings)


def model_class(resolved: ResolvedConfig, registry):
    if "model" not in resolved.components:
        raise ConfigError("model: not set; pick a method (method=...) or a model (model=relforge.seq2seq, ...; "
                          "see `relforge plugins`)")
    return registry.get(ComponentKind.MODEL, resolved.components["model"][0]).factory


def build_model(resolved: ResolvedConfig, *, labels: Sequence[str], label_words: Mapping[str, str],
                no_relation: str | None, registry, from_folder: str | Path | None = None,
                relation_templates: Mapping[str, str] | None = None, inference: bool = False):
    """The model the configuration describes. ``from_folder`` loads the
    weights (and state) saved by a previous run; ``inference`` leaves the
    training-only parts (the loss) unbuilt. ``relation_templates``: the data
    layer's SuRE-style templates of the labels (computed from the data set's
    defaults when not given) for templates that bind them."""
    cls = model_class(resolved, registry)
    settings = resolved.model_settings
    uses = cls.uses
    built = {path: create_component(registry, resolved, path) for path in ("template", "loss", "decoder", "retriever")
             if path in uses and path in resolved.components and not (inference and path in TRAINING_ONLY)}
    template = built.get("template")
    if template is None:
        raise ConfigError(f"template: model {cls.name} needs one (see `relforge plugins`)")
    if isinstance(template, BindsRelationTemplates) and from_folder is None:
        if relation_templates is None:
            relation_templates = default_relation_templates(resolved, registry, labels, label_words)
        template.bind_relation_templates({lab: relation_templates[lab] for lab in labels if lab in relation_templates},
                                         no_relation)
    decision = resolved.run.decision
    parts = ModelParts(labels=list(labels), label_words=dict(label_words), no_relation=no_relation,
                       template=template, loss=built.get("loss"), decoder=built.get("decoder"),
                       retriever=built.get("retriever"), relation_templates=dict(relation_templates or {}),
                       from_folder=Path(from_folder) if from_folder is not None else None,
                       decision_threshold=decision.threshold if decision.mode == "threshold" else None)
    model = cls.build(settings, parts)
    if settings.freeze_embeddings:
        freeze_token_embeddings(model)
    return model


def default_relation_templates(resolved: ResolvedConfig, registry, labels: Sequence[str],
                               label_words: Mapping[str, str]) -> dict[str, str]:
    """The data layer's relation templates for ``labels`` (with the run's
    verbalizer override), from the words the run was given: no data
    directory is read."""
    from types import SimpleNamespace

    from relforge.data import build_verbalizer

    ds = resolved.run.data.dataset
    name = registry.create("dataset", ds.name, ds.settings).name if ds is not None else ""
    shim = SimpleNamespace(name=name, default_label_words=lambda labs, _dir: {lab: label_words[lab] for lab in labs})
    return dict(build_verbalizer(shim, list(labels), resolved.run.data.verbalizer).templates)


def freeze_token_embeddings(model: torch.nn.Module) -> int:
    """Stop gradients to the token embedding matrices of every pretrained
    (``transformers``) model inside ``model`` -- input embeddings and output
    embeddings, which are often the same tied matrix. Position embeddings and
    everything else keep training. Returns how many parameters were frozen."""
    from transformers import PreTrainedModel

    frozen: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        if not isinstance(module, PreTrainedModel):
            continue
        for getter in (module.get_input_embeddings, module.get_output_embeddings):
            try:
                layer = getter()
            except (NotImplementedError, AttributeError):  # transformers' models without such a layer
                continue
            weight = layer.weight if isinstance(layer, torch.nn.Module) else None
            if isinstance(weight, torch.nn.Parameter):
                frozen[id(weight)] = weight
    for weight in frozen.values():
        weight.requires_grad_(False)
    return sum(w.numel() for w in frozen.values())


def _inference_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A saved configuration without the training-only sections."""
    data = {k: v for k, v in config.items() if k not in TRAINING_ONLY}
    train = dict(data.get("train") or {})
    train.pop("group_learning_rates", None)
    data["train"] = train
    return data


def _missing_plugin_hint(exc: Exception, meta: Mapping[str, Any]) -> str:
    plugins = meta.get("plugins") or {}
    named = [f"{name} (pip install {info.get('distribution') or name}"
             f"{'==' + info['version'] if info.get('version') else ''})"
             for name, info in sorted(plugins.items()) if f"'{name}." in str(exc)]
    return f"; the model was saved with plugin {', '.join(named)}" if named else ""


def load_saved(folder: str | Path, *, registry=None, inference: bool = True) -> tuple[Any, ResolvedConfig, dict]:
    """(model, resolved config, meta) of a folder written by ``model.save``.
    With ``inference`` (the default) the training-only parts (loss,
    pretraining stages) are neither needed nor built."""
    from relforge import progress

    with progress.task(f"loading model {folder}", unit="files"):
        return _load_saved(folder, registry=registry, inference=inference)


def _load_saved(folder: str | Path, *, registry=None, inference: bool = True) -> tuple[Any, ResolvedConfig, dict]:
    from relforge.config import migrate_legacy_config
    from relforge.registry import get_registry

    registry = registry or get_registry()
    meta = read_meta(folder)
    config = migrate_legacy_config(meta["config"])
    try:
        resolved = validate_config(_inference_config(config) if inference else config, registry=registry,
                                   check=False)
    except ConfigError as exc:
        raise ConfigError(f"{Path(folder) / META_FILE}: {exc}{_missing_plugin_hint(exc, meta)}") from None
    model = build_model(resolved, labels=meta["labels"], label_words=meta["label_words"],
                        no_relation=meta["no_relation"], registry=registry, from_folder=folder, inference=inference)
    return model, resolved, meta
