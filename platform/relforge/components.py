"""Component kinds: a small protocol each, and the settings convention.

A component is a class with

* ``name``: its short name (the registry prefixes the plugin's name);
* ``Settings``: a pydantic model of its configuration. Unknown keys are
  errors (``extra="forbid"``), so a typo in a config never passes silently;
* ``__init__(self, settings)``: it receives a validated ``Settings`` instance.

The registry builds components from configuration with
``Registry.create(kind, ref)``; methods are not classes but named default
configurations (:class:`Method`).
"""
from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch

    from relforge.data.example import Example


class ComponentKind(str, enum.Enum):
    TEMPLATE = "template"
    DECODER = "decoder"
    RETRIEVER = "retriever"
    LOSS = "loss"
    PRETRAINING_STAGE = "pretraining_stage"
    DATASET = "dataset"
    METHOD = "method"

    @property
    def hook(self) -> str:
        return HOOK_FOR_KIND[self]

    @property
    def plural(self) -> str:
        return self.hook.removeprefix("register_")


HOOK_FOR_KIND = {
    ComponentKind.TEMPLATE: "register_templates",
    ComponentKind.DECODER: "register_decoders",
    ComponentKind.RETRIEVER: "register_retrievers",
    ComponentKind.LOSS: "register_losses",
    ComponentKind.PRETRAINING_STAGE: "register_pretraining_stages",
    ComponentKind.DATASET: "register_datasets",
    ComponentKind.METHOD: "register_methods",
}


class Settings(BaseModel):
    """Base for component settings: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Component:
    """Base of every registrable component class."""

    kind: ClassVar[ComponentKind]
    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]] = Settings

    def __init__(self, settings: BaseModel | None = None) -> None:
        self.settings = settings if settings is not None else type(self).Settings()


# --- templates -----------------------------------------------------------

@dataclass
class RenderedExample:
    """What a template makes of one example.

    ``source``: the model input text. ``targets``: the target text of each
    gold relation (several for multi-relation pairs; the no-relation target
    when there is none). ``candidates``: label -> target text for every
    candidate label, in the label space's order.
    """

    source: str
    targets: list[str]
    candidates: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)


class Template(Component):
    kind = ComponentKind.TEMPLATE

    #: special tokens the template needs in the tokenizer (sentinels, markers)
    special_tokens: ClassVar[Sequence[str]] = ()

    def render(self, example: Example, label_words: Mapping[str, str]) -> RenderedExample:
        """Render ``example``; ``label_words`` maps each candidate label to its
        verbalization."""
        raise NotImplementedError


# --- decoders --------------------------------------------------------------

@dataclass(frozen=True)
class ScoredCandidate:
    """One candidate label with its scores (log-probabilities).

    ``score``: what the decoder ranks by (e.g. length-normalised or
    branch-renormalised log-probability); ``total_logprob``: the summed token
    log-probability of the candidate's target, when the decoder computed it;
    ``num_tokens``: the target's token count (end token included).
    """

    label: str
    score: float
    total_logprob: float | None = None
    num_tokens: int | None = None


class Decoder(Component):
    kind = ComponentKind.DECODER

    def rank(self, model: Any, tokenizer: Any, sources: Sequence[str],
             candidates: Sequence[Mapping[str, str]]) -> list[list[ScoredCandidate]]:
        """Rank each source's candidates (label -> target text), best first.

        ``candidates[i]`` may differ between examples (a subset filtered by
        entity types, or targets that mention the example's entities); an
        empty mapping gets an empty ranking. Scoring decoders return every
        candidate; generating decoders return those their search reached."""
        raise NotImplementedError


# --- retrievers ------------------------------------------------------------

@dataclass
class Retrieval:
    """A retriever's answer for a batch of queries.

    ``weights``: (batch, k, memory) selection weights (one-hot for hard
    retrieval, soft for differentiable kNN); ``indices``: (batch, k) the
    memory rows with the largest weight; ``neighbours``: (batch, k, dim) the
    weighted memory vectors.
    """

    weights: torch.Tensor
    indices: torch.Tensor
    neighbours: torch.Tensor


class Retriever(Component):
    kind = ComponentKind.RETRIEVER

    def retrieve(self, query: torch.Tensor, memory: torch.Tensor, k: int,
                 exclude: torch.Tensor | None = None) -> Retrieval:
        """Select ``k`` neighbours of each query row among the memory rows;
        ``exclude`` (batch,) gives a memory row each query must not retrieve
        (its own instance during training), or -1 for none."""
        raise NotImplementedError


# --- losses ----------------------------------------------------------------

class Loss(Component):
    kind = ComponentKind.LOSS

    def __call__(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> torch.Tensor:
        """A scalar loss from the model's ``outputs`` and the ``batch``."""
        raise NotImplementedError


# --- pretraining stages ----------------------------------------------------

class PretrainingStage(Component):
    kind = ComponentKind.PRETRAINING_STAGE

    def run(self, model: Any, tokenizer: Any, examples: Sequence[Example],
            context: Mapping[str, Any]) -> Any:
        """Pretrain ``model`` on ``examples``; return the (updated) model."""
        raise NotImplementedError


# --- datasets --------------------------------------------------------------

class Dataset(Component):
    kind = ComponentKind.DATASET

    #: the no-relation label of the data set, if it has one
    no_relation: ClassVar[str | None] = None

    def splits(self) -> list[str]:
        """The split names this reader can read."""
        raise NotImplementedError

    def read(self, split: str, data_dir: Path | None) -> list[Example]:
        """Read one split. A missing file is an error naming the path."""
        raise NotImplementedError

    def labels(self, data_dir: Path | None) -> list[str]:
        """The label space, no-relation label included where there is one."""
        raise NotImplementedError


# --- methods ---------------------------------------------------------------

@dataclass
class Method:
    """A named recipe: the default configuration that picks components by
    name. A user's configuration is merged on top of ``defaults``.

    ``build_model``: optional. By default the engine builds its generative
    model (``model.architecture: seq2seq``) or its typed-marker classifier
    (``encoder``) from the configured components. A method whose model is
    different (retrieval-augmented, say) gives a callable
    ``build_model(*, resolved, labels, label_words, no_relation, registry,
    from_folder)`` returning a ``torch.nn.Module`` with the interface of
    :class:`relforge.engine.models.GenerativeREModel` (``features``,
    ``collate``, ``forward``, ``rank``, ``save``, ``tokenizer``, ``labels``,
    ``no_relation``); ``from_folder`` is a folder its ``save`` wrote, to load
    instead of a fresh backbone.
    """

    name: str
    defaults: dict[str, Any]
    description: str = ""
    build_model: Any = None
    kind: ClassVar[ComponentKind] = ComponentKind.METHOD


BASE_FOR_KIND: dict[ComponentKind, type] = {
    ComponentKind.TEMPLATE: Template,
    ComponentKind.DECODER: Decoder,
    ComponentKind.RETRIEVER: Retriever,
    ComponentKind.LOSS: Loss,
    ComponentKind.PRETRAINING_STAGE: PretrainingStage,
    ComponentKind.DATASET: Dataset,
    ComponentKind.METHOD: Method,
}
