"""The core's built-in plugin (registered under the name ``relforge``).

It offers the components that belong to the core because more than one
method uses them (dataset readers, decoders, generic templates and losses),
the two models (generative and classifier), the embedded quickstart data set, and the two baselines every method is
compared with. Each area keeps its own registration function; this module
only wires them to the hooks, so the core's components are registered exactly
as a plugin's are.
"""
from __future__ import annotations

from relforge.components import Method
from relforge.hookspecs import hookimpl

#: GenPT-style generative fine-tuning: infilling template, plain token
#: cross-entropy, Trie-constrained beam search
GENERATIVE_CE = {
    "model": {"name": "relforge.seq2seq", "backbone": "minilm"},
    "template": {"name": "relforge.infill"},
    "loss": {"name": "relforge.cross_entropy"},
    "decoder": {"name": "relforge.trie-beam", "num_beams": 4},
    "decision": {"mode": "argmax"},
    "train": {"learning_rate": 1e-4},
}

#: Zhou and Chen (2021): typed entity markers, start-marker states, classifier
MARKER_CLASSIFIER = {
    "model": {"name": "relforge.marker_classifier", "backbone": "minilm"},
    "template": {"name": "relforge.typed_markers"},
    "loss": {"name": "relforge.classification_ce"},
    "decision": {"mode": "argmax"},
    "train": {"learning_rate": 5e-5, "group_learning_rates": {"head": 1e-3}},
}


@hookimpl
def register_datasets(register):
    from relforge.data.registration import register_datasets as _register
    from relforge.quickstart.data import QuickstartDataset

    _register(register)
    register(QuickstartDataset)


@hookimpl
def register_decoders(register):
    from relforge.decoding.registration import register_decoders as _register

    _register(register)


@hookimpl
def register_templates(register):
    from relforge.templates import InfillTemplate, TypedMarkerTemplate

    register(InfillTemplate)
    register(TypedMarkerTemplate)


@hookimpl
def register_losses(register):
    from relforge.losses import ClassificationCrossEntropy, TokenCrossEntropy

    register(TokenCrossEntropy)
    register(ClassificationCrossEntropy)


@hookimpl
def register_models(register):
    from relforge.engine.models import GenerativeREModel, MarkerClassifierModel

    register(GenerativeREModel)
    register(MarkerClassifierModel)


@hookimpl
def register_methods(register):
    register(Method("generative_ce", GENERATIVE_CE,
                    "Baseline: generative fine-tuning with token cross-entropy and Trie-constrained decoding"))
    register(Method("marker_classifier", MARKER_CLASSIFIER,
                    "Baseline: typed entity markers + classifier (Zhou and Chen, 2021)"))


@hookimpl
def register_executors(register):
    from relforge.bench.executors import register_executors as _register

    _register(register)
