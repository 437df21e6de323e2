"""ETRAG: end-to-end trainable retrieval-augmented generation for relation extraction (arXiv 2406.03790).

A RelForge plugin, registered through the ``relforge`` entry-point group
exactly as a third-party plugin is. It imports only the core's public API.

Components: template ``etrag.sure``; retrievers ``etrag.soft_knn``,
``etrag.topk``, ``etrag.random``; pretraining stage
``etrag.retriever_warmup``; model ``etrag.rag``; method ``etrag``. See
README.md.
"""
from relforge import hookimpl
from relforge.components import Method

__version__ = "0.1.0"

#: the method's defaults, sized for the quickstart on a 2-core CPU (MiniLM, a
#: pool of 16 rather than the paper's 32, a 4-step warm-up); the suites in
#: benchmarks/suites/etrag-*.yaml and paper-etrag-tacred.yaml set the paper's
#: pool of 32 and longer warm-ups
ETRAG_DEFAULTS = {
    "model": {"name": "etrag.rag", "backbone": "minilm", "k": 5, "pool_size": 16, "refresh_every": 100},
    "template": {"name": "etrag.sure"},
    "loss": {"name": "relforge.cross_entropy"},
    "decoder": {"name": "relforge.sure"},
    "retriever": {"name": "etrag.soft_knn", "temperature": 1.0},
    "pretraining": [{"name": "etrag.retriever_warmup", "steps": 4, "learning_rate": 1e-4}],
    "decision": {"mode": "argmax"},
    "train": {"learning_rate": 1e-4, "group_learning_rates": {"retriever": 2e-5, "projection": 1e-3}},
}


@hookimpl
def register_templates(register):
    from relforge_etrag.template import SureTemplate

    register(SureTemplate)


@hookimpl
def register_retrievers(register):
    from relforge_etrag.retrievers import HardTopKRetriever, RandomRetriever, SoftKNNRetriever

    register(SoftKNNRetriever)
    register(HardTopKRetriever)
    register(RandomRetriever)


@hookimpl
def register_pretraining_stages(register):
    from relforge_etrag.warmup import RetrieverWarmup

    register(RetrieverWarmup)


@hookimpl
def register_models(register):
    from relforge_etrag.model import ETRAGModel

    register(ETRAGModel)


@hookimpl
def register_methods(register):
    register(Method("etrag", ETRAG_DEFAULTS,
                    "ETRAG (Makino et al., 2024): SuRE generation with soft prompts from an end-to-end trained "
                    "differentiable kNN retriever; model.k=0 is the SuRE baseline"))
