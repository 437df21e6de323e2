"""TKRE: two-stage knowledge-guided pretraining for few-shot relation extraction (arXiv 2505.12236).

A RelForge plugin, registered through the ``relforge`` entry-point group
exactly as a third-party plugin is. It imports only the core's public API.

Components:

* ``tkre.generate`` (pretraining stage): LLM knowledge generation
  (explanations and schema-constrained synthetic examples) with an
  OpenAI-compatible, a local ``transformers`` or a replay-only cache backend;
* ``tkre.mslm`` (pretraining stage 1): masked span language modelling;
* ``tkre.mslm_scl`` (pretraining stage 2): MSLM + span-level contrastive learning;
* the ``tkre`` method: generation -> stage 1 -> stage 2 -> the engine's
  typed-marker classifier fine-tuned on the K-shot set plus the kept
  synthetic examples.
"""
from __future__ import annotations

import copy

from relforge import hookimpl

__version__ = "0.1.0"

#: stages in order; generation does nothing until an LLM is configured
TKRE_PRETRAINING = [{"name": "tkre.generate"}, {"name": "tkre.mslm"}, {"name": "tkre.mslm_scl"}]


def method_defaults() -> dict:
    from relforge.builtin import MARKER_CLASSIFIER

    defaults = copy.deepcopy(MARKER_CLASSIFIER)
    defaults["pretraining"] = copy.deepcopy(TKRE_PRETRAINING)
    return defaults


@hookimpl
def register_pretraining_stages(register):
    from .generation import KnowledgeGenerationStage
    from .stages import MaskedSpanLMContrastiveStage, MaskedSpanLMStage

    register(KnowledgeGenerationStage)
    register(MaskedSpanLMStage)
    register(MaskedSpanLMContrastiveStage)


@hookimpl
def register_methods(register):
    from relforge.components import Method

    register(Method("tkre", method_defaults(),
                    "TKRE: LLM knowledge (when an endpoint is configured) -> MSLM -> MSLM + span contrastive "
                    "pretraining of the encoder -> typed-marker classifier"))
