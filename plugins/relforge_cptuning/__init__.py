"""CPTuning: contrastive prompt tuning for generative relation extraction (arXiv 2501.02196).

A RelForge plugin, registered through the ``relforge`` entry-point group
exactly as a third-party plugin is. Components:

* template ``cptuning.infill``: sentinel infilling with entity types;
* loss ``cptuning.contrastive_threshold``: label-smoothed generation loss +
  contrastive threshold loss over every candidate of each example, in batch;
* decoder ``cptuning.free_generation``: the no-Trie ablation (free
  generation mapped to the nearest label);
* method ``cptuning``: the recipe (the core's generative model, exact
  candidate scores at inference, every candidate above the threshold kept;
  a learned threshold is applied by the model through the loss's
  ``LearnsThreshold`` ability).

See README.md for what is taken from the paper and what is a choice.
"""
from __future__ import annotations

from relforge import hookimpl
from relforge.components import Method

__version__ = "0.1.0"

#: the recipe; the ablations are configuration changes (configs/ and README.md)
CPTUNING = {
    "model": {"name": "relforge.seq2seq", "backbone": "minilm"},
    "template": {"name": "cptuning.infill"},
    # the threshold is spelled out so that the decision can follow it; a configuration that replaces
    # the loss with one without a threshold keeps 0.5 (oc.select's default) or sets decision.threshold
    "loss": {"name": "cptuning.contrastive_threshold", "threshold": 0.5},
    "decoder": {"name": "relforge.exact", "normalize": "mean"},
    # keep every candidate whose length-normalised probability passes the loss's threshold;
    # none passes: the top one, unless it is the no-relation label
    "decision": {"mode": "threshold", "threshold": "${oc.select:loss.threshold,0.5}", "fallback_top1": True},
    "train": {"learning_rate": 1e-4},
}


@hookimpl
def register_templates(register):
    from .templates import CPTuningTemplate

    register(CPTuningTemplate)


@hookimpl
def register_losses(register):
    from .losses import ContrastiveThresholdLoss

    register(ContrastiveThresholdLoss)


@hookimpl
def register_decoders(register):
    from .decoders import FreeGenerationDecoder

    register(FreeGenerationDecoder)


@hookimpl
def register_methods(register):
    register(Method("cptuning", CPTUNING,
                    "CPTuning: infilling + contrastive threshold loss over all candidates, multi-label "
                    "threshold decision (arXiv 2501.02196)"))
