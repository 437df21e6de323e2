"""Building a model from a resolved configuration (fresh, or from a saved folder)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from relforge.config import COMPONENT_SECTIONS, ResolvedConfig, validate_config
from relforge.engine.models import GenerativeREModel, MarkerClassifierModel, read_meta


def _component(registry, resolved: ResolvedConfig, path: str, required_for: str):
    if path not in resolved.components:
        raise ValueError(f"the {required_for} model needs `{path}` in the configuration "
                         f"(pick one from `relforge plugins`)")
    name, settings = resolved.components[path]
    return registry.create(COMPONENT_SECTIONS[path], name, settings)


def build_model(resolved: ResolvedConfig, *, labels: Sequence[str], label_words: Mapping[str, str],
                no_relation: str | None, registry, from_folder: str | Path | None = None):
    """The model the configuration describes. ``from_folder`` loads the
    backbone (and head) saved by a previous run instead of ``model.backbone``."""
    model = _build(resolved, labels=labels, label_words=label_words, no_relation=no_relation, registry=registry,
                   from_folder=from_folder)
    if resolved.run.model.freeze_embeddings:
        freeze_token_embeddings(model)
    return model


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
        for getter in ("get_input_embeddings", "get_output_embeddings"):
            try:
                layer = getattr(module, getter)()
            except (NotImplementedError, AttributeError):
                continue
            weight = getattr(layer, "weight", None)
            if isinstance(weight, torch.nn.Parameter):
                frozen[id(weight)] = weight
    for weight in frozen.values():
        weight.requires_grad_(False)
    return sum(w.numel() for w in frozen.values())


def _build(resolved: ResolvedConfig, *, labels: Sequence[str], label_words: Mapping[str, str],
           no_relation: str | None, registry, from_folder: str | Path | None = None):
    run = resolved.run
    method = registry.method(run.method) if run.method else None
    builder = getattr(method, "build_model", None)
    if builder is not None:
        return builder(resolved=resolved, labels=labels, label_words=label_words, no_relation=no_relation,
                       registry=registry, from_folder=from_folder)
    source = str(from_folder) if from_folder is not None else run.model.backbone
    if run.model.architecture == "seq2seq":
        from relforge.models.backbone import load_seq2seq

        template = _component(registry, resolved, "template", "seq2seq")
        backbone, tokenizer = load_seq2seq(source, special_tokens=tuple(getattr(template, "special_tokens", ())))
        model = GenerativeREModel(backbone, tokenizer, template=template,
                                  loss=_component(registry, resolved, "loss", "seq2seq"),
                                  decoder=_component(registry, resolved, "decoder", "seq2seq"),
                                  labels=labels, label_words=label_words, no_relation=no_relation,
                                  max_source_length=run.model.max_source_length,
                                  max_target_length=run.model.max_target_length)
        if from_folder is not None and (Path(from_folder) / "loss.safetensors").exists():
            from safetensors.torch import load_file

            model.loss_fn.load_state_dict(load_file(Path(from_folder) / "loss.safetensors"))
        return model
    if run.model.architecture == "encoder":
        from relforge.models.encoder import load_encoder

        encoder, tokenizer = load_encoder(source)
        model = MarkerClassifierModel(encoder, tokenizer, template=_component(registry, resolved, "template", "encoder"),
                                      loss=_component(registry, resolved, "loss", "encoder"), labels=labels,
                                      no_relation=no_relation, label_words=label_words,
                                      max_source_length=run.model.max_source_length,
                                      dropout=float(run.model.options.get("dropout", 0.1)))
        if from_folder is not None:
            from safetensors.torch import load_file

            model.classifier.load_state_dict(load_file(Path(from_folder) / "classifier.safetensors"))
        return model
    raise ValueError(f"model.architecture must be 'seq2seq' or 'encoder', got {run.model.architecture!r}")


def load_saved(folder: str | Path, *, registry=None) -> tuple[Any, ResolvedConfig, dict]:
    """(model, resolved config, meta) of a folder written by ``model.save``."""
    from relforge.registry import get_registry

    registry = registry or get_registry()
    meta = read_meta(folder)
    resolved = validate_config(meta["config"], registry=registry)
    model = build_model(resolved, labels=meta["labels"], label_words=meta["label_words"],
                        no_relation=meta["no_relation"], registry=registry, from_folder=folder)
    return model, resolved, meta
