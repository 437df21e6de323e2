"""CPTuning's model: the engine's generative model, with the inference
threshold taken from the loss when the loss learns it.

The core's threshold decision compares ``exp(score)`` with the fixed
``decision.threshold``. A learned threshold lives in the loss (saved as
``loss.safetensors`` and restored by the builder); so that the core's
decision applies it unchanged, :meth:`CPTuningModel.rank` shifts every score
by ``log(decision.threshold) - log(learned threshold)``: a candidate then
passes ``decision.threshold`` exactly when its length-normalised probability
passes the learned threshold. With a fixed threshold the shift is zero (the
recipe sets ``decision.threshold: ${loss.threshold}``).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from relforge.engine.models import GenerativeREModel


class CPTuningModel(GenerativeREModel):
    def __init__(self, *args, decision_threshold: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.decision_threshold = decision_threshold

    def score_shift(self) -> float:
        loss = self.loss_fn
        if self.decision_threshold is None or not getattr(getattr(loss, "settings", None), "learn_threshold", False):
            return 0.0
        return math.log(self.decision_threshold) - float(loss.log_threshold())

    def rank(self, examples, batch_size: int = 32, labels=None):
        rankings = super().rank(examples, batch_size=batch_size, labels=labels)
        shift = self.score_shift()
        if shift == 0.0:
            return rankings
        return [[dataclasses.replace(c, score=c.score + shift) for c in r] for r in rankings]


def build_cptuning_model(*, resolved, labels, label_words, no_relation, registry, from_folder=None):
    """The ``cptuning`` method's model builder (see ``Method.build_model``)."""
    from relforge.config import COMPONENT_SECTIONS
    from relforge.models.backbone import load_seq2seq

    run = resolved.run
    if run.model.architecture != "seq2seq":
        raise ValueError(f"cptuning needs model.architecture: seq2seq, got {run.model.architecture!r}")

    def component(path):
        if path not in resolved.components:
            raise ValueError(f"cptuning needs `{path}` in the configuration (pick one from `relforge plugins`)")
        name, settings = resolved.components[path]
        return registry.create(COMPONENT_SECTIONS[path], name, settings)

    template = component("template")
    source = str(from_folder) if from_folder is not None else run.model.backbone
    backbone, tokenizer = load_seq2seq(source, special_tokens=tuple(getattr(template, "special_tokens", ())))
    model = CPTuningModel(backbone, tokenizer, template=template, loss=component("loss"),
                          decoder=component("decoder"), labels=labels, label_words=label_words,
                          no_relation=no_relation, max_source_length=run.model.max_source_length,
                          max_target_length=run.model.max_target_length,
                          decision_threshold=run.decision.threshold if run.decision.mode == "threshold" else None)
    if from_folder is not None and (Path(from_folder) / "loss.safetensors").exists():
        from safetensors.torch import load_file

        model.loss_fn.load_state_dict(load_file(Path(from_folder) / "loss.safetensors"))
    return model
