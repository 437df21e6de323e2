"""Component kinds: one table, a small protocol each, and the settings convention.

A component is a class with

* ``name``: its short name (the registry prefixes the plugin's name);
* ``Settings``: a pydantic model of its configuration. Unknown keys are
  errors (``extra="forbid"``), so a typo in a config never passes silently;
* ``__init__(self, settings)``: it receives a validated ``Settings`` instance
  (models are built by their ``build`` class method instead, see
  :class:`REModel`);
* ``provides`` / ``requires``: the :class:`Ability` values it offers and the
  ones it needs from the components of other configuration sections. They
  are checked when the configuration is validated, before any weight is
  loaded (:func:`relforge.compat.check_compatibility`), so an impossible
  combination is refused with a message naming both parts.

:data:`KINDS` is the one table of component kinds: the hook names, the
configuration sections, the base classes and the ``relforge plugins``
listing are all derived from it. Adding a kind is one row here plus its
hook specification in :mod:`relforge.hookspecs`.

Methods are not classes but named default configurations (:class:`Method`).
"""
from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    MODEL = "model"
    METHOD = "method"
    EXECUTOR = "executor"

    @property
    def spec(self) -> KindSpec:
        return KIND_SPECS[self]

    @property
    def hook(self) -> str:
        return self.spec.hook

    @property
    def plural(self) -> str:
        return self.hook.removeprefix("register_")


class Ability(str, enum.Enum):
    """What a component offers another, declared in ``provides`` and asked
    for in ``requires`` (section -> abilities). The value is what messages
    show."""

    # models
    SEQ2SEQ = "a seq2seq backbone that decoders rank with"
    TOKEN_TARGETS = "token logits (B, T, V) against target token ids (batch.labels)"
    CLASS_LOGITS = "class logits (B, C) against label ids (batch.label_ids / batch.label_targets)"
    ENCODER_STATES = "its encoder states and the attention mask it used (outputs.encoder_hidden)"
    PRETRAINABLE_ENCODER = "a bare encoder with a masked-LM tokenizer (model.encoder)"
    RETRIEVAL = "retrieval from a memory of training instances (a retriever section)"
    # templates
    TEXT_TARGETS = "text targets and verbalized candidates"
    MARKER_OFFSETS = "entity-marker character offsets (extra head_start / tail_start)"
    ENTITY_SPANS = "entity and sentence character spans in the source (extra head_span / tail_span / sentence_span)"
    RELATION_TEMPLATES = "SuRE-style relation templates (bind_relation_templates)"
    # decoders
    ENCODED_SCORING = "ranking from encoder states (rank_encoded)"
    # retrievers
    SPAN_MEMORY = "span-stacked (rows, S, H) queries and memories with a (batch, M) exclusion mask"


class Settings(BaseModel):
    """Base for component settings: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Component:
    """Base of every registrable component class."""

    kind: ClassVar[ComponentKind]
    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]] = Settings
    #: abilities this component offers to the others
    provides: ClassVar[frozenset[Ability]] = frozenset()
    #: configuration section ("model", "template", ...) -> abilities needed of its component
    requires: ClassVar[Mapping[str, frozenset[Ability]]] = {}

    def __init__(self, settings: BaseModel | None = None) -> None:
        self.settings = settings if settings is not None else type(self).Settings()

    @classmethod
    def abilities(cls, settings: BaseModel) -> frozenset[Ability]:
        """What this component offers with ``settings`` (default: ``provides``)."""
        return frozenset(cls.provides)

    @classmethod
    def requirements(cls, settings: BaseModel) -> Mapping[str, frozenset[Ability]]:
        """What it needs with ``settings`` (default: ``requires``)."""
        return {k: frozenset(v) for k, v in cls.requires.items()}


# --- values passed between parts --------------------------------------------

@dataclass
class Batch:
    """A collated batch, as a loss, a model and the trainer see it.

    ``input_ids`` / ``attention_mask``: (B, L) the tokenized sources;
    ``gold``: each row's gold labels (the no-relation label when none);
    ``ids``: each row's example id. Subclasses add what their model family
    needs. ``to(device)`` moves every tensor (what Accelerate calls)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    gold: list[list[str]]
    ids: list[str] = field(default_factory=list)

    def to(self, device: Any, **kwargs: Any) -> Batch:
        import torch

        moved = {f.name: getattr(self, f.name).to(device, **kwargs) for f in fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        return replace(self, **moved)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class Seq2SeqBatch(Batch):
    """A generative model's batch. ``labels``: (B, T) target token ids
    (-100 padding, end token included); ``sources``: the source texts;
    ``candidates``: per row, label -> target text of every candidate;
    ``rows``: per row, model-specific extras (ETRAG: the spans its retriever
    pools and the training example the row came from)."""

    labels: torch.Tensor | None = None
    sources: list[str] = field(default_factory=list)
    candidates: list[dict[str, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ClassifierBatch(Batch):
    """A classifier's batch. ``positions``: (B, 2) the head and tail marker
    token positions; ``label_ids``: (B,) the first gold label's index;
    ``label_targets``: (B, C) multi-hot gold labels."""

    positions: torch.Tensor | None = None
    label_ids: torch.Tensor | None = None
    label_targets: torch.Tensor | None = None


@dataclass
class ModelOutput:
    """What a model's forward pass gives a loss: ``logits`` ((B, T, V) token
    logits for generative models, (B, C) class logits for classifiers) and,
    once the loss ran, ``loss``."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None


@dataclass
class Seq2SeqOutput(ModelOutput):
    """A generative model's outputs. ``encoder_hidden``: (B, L', H) the
    encoder states the decoder attended to and ``attention_mask``: (B, L')
    the mask it really used -- L' includes any positions the model inserted
    (ETRAG's soft prompts), so a loss that runs the decoder again over the
    same states (candidate scoring) stays aligned; ``model``: the
    :class:`REModel` (its backbone, tokenizer and ``max_target_length``)."""

    encoder_hidden: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    model: Any = None


# --- templates -----------------------------------------------------------

@dataclass
class RenderedExample:
    """What a template makes of one example.

    ``source``: the model input text. ``targets``: the target text of each
    gold relation (several for multi-relation pairs; the no-relation target
    when there is none). ``candidates``: label -> target text for every
    candidate label, in the label space's order. ``extra``: what the
    template's declared abilities promise (``head_start``/``tail_start`` for
    :attr:`Ability.MARKER_OFFSETS`, ``head_span``/``tail_span``/
    ``sentence_span`` for :attr:`Ability.ENTITY_SPANS`).
    """

    source: str
    targets: list[str]
    candidates: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)


class Template(Component):
    kind = ComponentKind.TEMPLATE
    provides = frozenset({Ability.TEXT_TARGETS})

    #: special tokens the template needs in the tokenizer (sentinels, markers)
    special_tokens: ClassVar[Sequence[str]] = ()

    def render(self, example: Example, label_words: Mapping[str, str]) -> RenderedExample:
        """Render ``example``; ``label_words`` maps each candidate label to its
        verbalization."""
        raise NotImplementedError

    def fit(self, examples: Sequence[Example]) -> None:
        """Learn what the template needs from the training examples (e.g.
        type constraints); called by models on their training features.
        Default: nothing."""


class BindsRelationTemplates(ABC):
    """Template ability (:attr:`Ability.RELATION_TEMPLATES`): it fills
    per-relation templates (``{subj} was born in {obj}``) that the model
    binds from the data layer's verbalizer, and can save and restore them."""

    @abstractmethod
    def bind_relation_templates(self, templates: Mapping[str, str], no_relation: str | None) -> None: ...

    @abstractmethod
    def template_state(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_template_state(self, state: Mapping[str, Any]) -> None: ...


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
    requires = {"model": frozenset({Ability.SEQ2SEQ})}

    def rank(self, model: Any, tokenizer: Any, sources: Sequence[str],
             candidates: Sequence[Mapping[str, str]]) -> list[list[ScoredCandidate]]:
        """Rank each source's candidates (label -> target text), best first.

        ``model`` is the seq2seq backbone (a ``transformers`` model), on its
        device. ``candidates[i]`` may differ between examples (a subset
        filtered by entity types, or targets that mention the example's
        entities); an empty mapping gets an empty ranking. Scoring decoders
        return every candidate; generating decoders return those their search
        reached."""
        raise NotImplementedError


class RanksEncoded(ABC):
    """Decoder ability (:attr:`Ability.ENCODED_SCORING`): rank from encoder
    states that the caller computed (a model that changes the encoder input,
    such as ETRAG's soft prompts, ranks through the same decoder)."""

    @abstractmethod
    def rank_encoded(self, model: Any, tokenizer: Any, encoder_hidden: torch.Tensor,
                     attention_mask: torch.Tensor,
                     candidates: Sequence[Mapping[str, str]]) -> list[list[ScoredCandidate]]:
        """Like :meth:`Decoder.rank` with the sources already encoded:
        ``encoder_hidden`` (B, L, H) and the ``attention_mask`` (B, L) used."""


# --- retrievers ------------------------------------------------------------

@dataclass
class Retrieval:
    """A retriever's answer for a batch of queries.

    ``weights``: (batch, k, memory) selection weights (one-hot for hard
    retrieval, soft for differentiable kNN); ``indices``: (batch, k) the
    memory rows with the largest weight; ``neighbours``: (batch, k, S, H)
    the weighted memory vectors ((batch, k, H) for 2-D inputs).
    """

    weights: torch.Tensor
    indices: torch.Tensor
    neighbours: torch.Tensor


class Retriever(Component):
    """Selects ``k`` memory rows per query.

    The contract (:attr:`Ability.SPAN_MEMORY`, which every retriever must
    honour): ``query`` is (batch, S, H) -- a stack of S span vectors per
    instance, ETRAG's head, tail and relation spans -- or (batch, H), taken
    as S = 1; ``memory`` is (M, S, H) or (M, H) alike. ``exclude`` is None,
    a (batch,) tensor of one memory row per query (-1 for none), or a
    (batch, M) boolean mask of rows each query must not retrieve (every
    memory item of its own training example). The helpers in
    :mod:`relforge.retrieval` implement the shapes and the mask."""

    kind = ComponentKind.RETRIEVER
    provides = frozenset({Ability.SPAN_MEMORY})

    def retrieve(self, query: torch.Tensor, memory: torch.Tensor, k: int,
                 exclude: torch.Tensor | None = None) -> Retrieval:
        raise NotImplementedError


# --- losses ----------------------------------------------------------------

class Loss(Component):
    kind = ComponentKind.LOSS

    @property
    def multi_label(self) -> bool:
        """Whether the loss trains independent (multi-label) class scores, so
        a classifier ranks by log-sigmoid rather than log-softmax."""
        return False

    def __call__(self, outputs: ModelOutput, batch: Batch) -> torch.Tensor:
        """A scalar loss from the model's ``outputs`` and the ``batch``."""
        raise NotImplementedError


class LearnsThreshold(ABC):
    """Loss ability: it learns the decision threshold. The model records it
    when it saves and shifts its scores so that the core's threshold
    decision applies the learned one (see ``GenerativeREModel.rank``)."""

    @abstractmethod
    def learned_log_threshold(self) -> float | None:
        """The learned threshold on the log-probability scale, or None when
        the loss is configured with a fixed one."""


# --- pretraining stages ----------------------------------------------------

@dataclass
class StageContext:
    """What a pretraining stage is given besides the model.

    ``train_examples``: the training split (read it; add examples through
    :class:`StageResult`); ``seed``; ``output_dir``: the stage's own folder;
    ``run_dir``: the run's folder, where stages share files (TKRE's
    generated knowledge); ``run``: the :class:`relforge.run.Run` (metrics,
    tags, artifacts) or None; ``resolved`` and ``registry``: the run's
    configuration and registry (None outside a run); ``resume``: whether a
    stage continues from a checkpoint in ``output_dir`` (the run's own
    ``--resume``, passed by the pipeline; off for a stage run by hand;
    :func:`relforge.engine.stage_training.train_stage` honours it);
    ``progress``: show the stage's progress; ``superseded``: the run resumes from a checkpoint of its own
    fine-tuning (or a finished run's ``best/``), which already holds whatever the stages trained, so a stage
    that only changes weights need not train again (``train_stage`` skips;
    a stage that adds examples must still return them)."""

    train_examples: Sequence[Example]
    seed: int = 0
    output_dir: Path = Path(".")
    run_dir: Path = Path(".")
    run: Any = None
    resolved: Any = None
    registry: Any = None
    resume: bool = False
    superseded: bool = False
    progress: bool = True


@dataclass
class StageResult:
    """A stage's answer: ``model`` (None: the model it was given, updated in
    place) and ``added_examples`` that the pipeline appends to the training
    split (counted and logged as ``data/stage_added_examples``)."""

    model: Any = None
    added_examples: list[Example] = field(default_factory=list)


class PretrainingStage(Component):
    kind = ComponentKind.PRETRAINING_STAGE

    def run(self, model: REModel, context: StageContext) -> StageResult | None:
        """Pretrain ``model`` (an :class:`REModel`) before fine-tuning."""
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


# --- models ----------------------------------------------------------------

class ModelSettings(Settings):
    """Settings every model has; a model's own ``Settings`` derives from it."""

    #: a transformers hub id or local path; "minilm" means the packaged MiniLM
    backbone: str = "minilm"
    max_source_length: int = Field(256, gt=0)
    max_target_length: int = Field(32, gt=0)
    #: keep every pretrained model's token embedding matrices (and output
    #: projections tied to them) fixed: on a CPU their dense gradients and
    #: optimizer state are about half of a MiniLM step
    freeze_embeddings: bool = False


class Seq2SeqSettings(ModelSettings):
    """Settings of a generative (seq2seq) model."""

    #: an encoder-only checkpoint (the default MiniLM, a user's BERT/RoBERTa) is
    #: warm-started as an encoder-decoder whose decoder has no cross-attention
    #: yet: "random" (transformers' initialisation: near-zero queries and keys,
    #: so the decoder attends uniformly to every source position until those
    #: weights grow) or "self_attention" (each decoder layer's cross-attention
    #: starts as a copy of its own pretrained self-attention, so it attends by
    #: content from the first step). Only for warm-started checkpoints: a T5 or
    #: BART has its own pretrained cross-attention.
    cross_attention_init: Literal["random", "self_attention"] = "random"


@dataclass
class ModelParts:
    """What the engine hands a model's :meth:`REModel.build`.

    ``template``, ``loss``, ``decoder``, ``retriever``: the built components
    of the sections the model uses (``loss`` is None when a saved model is
    loaded for inference: training-only parts are not built then);
    ``labels``, ``label_words``, ``no_relation``: the label space;
    ``relation_templates``: the data layer's SuRE-style templates of the
    labels; ``from_folder``: a folder the model's ``save`` wrote, to load
    instead of fresh weights; ``decision_threshold``: the configured threshold
    of a threshold decision (None for argmax)."""

    labels: list[str]
    label_words: dict[str, str]
    no_relation: str | None
    template: Template
    loss: Loss | None = None
    decoder: Decoder | None = None
    retriever: Retriever | None = None
    relation_templates: dict[str, str] = field(default_factory=dict)
    from_folder: Path | None = None
    decision_threshold: float | None = None


class REModel(Component):
    """The model contract. A model is a ``torch.nn.Module`` that also derives
    from this class; it is registered through ``register_models`` and built
    by :meth:`build` from its validated settings and the parts the engine
    made from the configuration.

    The engine uses exactly this interface:

    * ``tokenizer``, ``labels``, ``label_words``, ``no_relation``;
    * ``features(examples, training)`` -> a list of feature records (one per
      (example, gold target) when training) and ``collate(features)`` -> a
      :class:`Batch`;
    * ``forward(batch)`` -> a :class:`ModelOutput` with ``loss`` set (the
      configured loss on the model's outputs);
    * ``rank(examples, batch_size, labels=None)`` -> per example, the
      candidates best first; ``labels`` restricts the candidates (an N-way
      episode), labels outside the training set included;
    * ``save(folder, meta)``, and :meth:`build` with ``parts.from_folder``
      to load.

    ``uses``: the configuration sections it builds with; ``needs``: those it
    cannot do without (a missing one is a configuration error, as is a
    section it does not use). Optional abilities are the ABCs below
    (:class:`Embeds`, :class:`HasParameterGroups`, :class:`HasRetriever`,
    :class:`HasBackbone`, :class:`HasEncoder`, :class:`ReportsDiagnostics`),
    tested with ``isinstance``.
    """

    kind = ComponentKind.MODEL
    Settings: ClassVar[type[BaseModel]] = ModelSettings
    uses: ClassVar[frozenset[str]] = frozenset({"template", "loss"})
    needs: ClassVar[frozenset[str]] = frozenset({"template", "loss"})

    tokenizer: Any
    labels: list[str]
    label_words: dict[str, str]
    no_relation: str | None

    @classmethod
    def needed_sections(cls, settings: BaseModel) -> frozenset[str]:
        """The sections this model cannot do without, with ``settings``."""
        return frozenset(cls.needs)

    @classmethod
    def build(cls, settings: BaseModel, parts: ModelParts) -> REModel:
        raise NotImplementedError

    def features(self, examples: Sequence[Example], training: bool = True) -> list[dict[str, Any]]:
        raise NotImplementedError

    def collate(self, features: Sequence[Mapping[str, Any]]) -> Batch:
        raise NotImplementedError

    def rank(self, examples: Sequence[Example], batch_size: int = 32,
             labels: Sequence[str] | None = None) -> list[list[ScoredCandidate]]:
        raise NotImplementedError

    def save(self, folder: Path, meta: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def take_counts(self) -> dict[str, float]:
        """What the model counted since the last call that a user must hear
        of (examples windowed to fit the length, ...); the pipeline logs it
        as ``model/<name>`` metrics. Default: nothing."""
        return {}


class Embeds(ABC):
    """Model ability: pair vectors for prototypes (episodic evaluation)."""

    @abstractmethod
    def embed(self, examples: Sequence[Example], batch_size: int = 32) -> torch.Tensor:
        """(len(examples), d) vectors of any examples, seen labels or not."""


class HasParameterGroups(ABC):
    """Model ability: named parameter groups (``train.group_learning_rates``);
    ``group_names`` lists them for configuration validation."""

    group_names: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]: ...


class ReportsDiagnostics(ABC):
    """Model ability: figures about its own inner workings, logged to the run
    while it trains (a retriever's weight entropy, gradient norms, how often
    neighbours share the query's label, ...).

    * :meth:`step_diagnostics` is called by the trainer after every
      optimizer step's backward pass (gradients present, before clipping);
      the trainer logs the mean over the steps since the last log as
      ``train/<name>`` every ``train.log_every`` steps.
    * :meth:`eval_diagnostics` is called after each dev evaluation (what
      the model gathered while ranking the dev examples); logged with the dev
      metrics as ``dev/<name>``.
    Both return plain floats and reset what they gathered."""

    @abstractmethod
    def step_diagnostics(self) -> dict[str, float]: ...

    def eval_diagnostics(self) -> dict[str, float]:
        return {}


class HasRetriever(ABC):
    """Model ability: a trainable retriever (what ``etrag.retriever_warmup``
    warms up)."""

    @abstractmethod
    def retriever_parameters(self) -> list[torch.nn.Parameter]:
        """The retriever's own parameters (empty when it does not retrieve)."""


class HasBackbone(ABC):
    """Model ability (:attr:`Ability.SEQ2SEQ`): a ``transformers`` seq2seq
    model (``backbone``) and its ``tokenizer``, what decoders rank with and
    what a stage may train directly (``backbone(input_ids=..., labels=...)``)."""

    backbone: Any


class HasEncoder(ABC):
    """Model ability (:attr:`Ability.PRETRAINABLE_ENCODER`): a bare
    ``transformers`` encoder (``encoder``) that pretraining stages train."""

    encoder: Any


# --- executors -------------------------------------------------------------

class Executor(Component):
    """Runs a suite's cells somewhere: in this process, in processes on this
    machine, on a cluster's scheduler (``relforge bench SUITE --executor
    NAME``; the suite file's ``executor:`` section and ``--executor-set
    key=value`` give its settings).

    The driver (``relforge.bench.runner.run_suite``) owns the sweep: it
    expands the cells, skips those finished earlier, opens the suite's parent
    MLflow run and, when cells run in other processes, the tracking server
    they log through. It hands the executor one
    :class:`relforge.bench.sweep.CellJob` per cell to run: a picklable,
    JSON-able description (the suite, the cell's id and configuration hash,
    folders, the tracking URI and the parent run's id). Wherever a job runs,
    :func:`relforge.bench.sweep.run_job` runs it: it trains the cell (resuming
    from the cell folder's checkpoint) and writes the cell's result record
    (:meth:`CellJob.result_path`), which is how the driver, and ``relforge
    bench --attach``, learn that a cell ended.

    An executor implements :meth:`run` (and may implement :meth:`describe`
    for ``--dry-run`` and :meth:`alive` for ``--attach``)."""

    kind = ComponentKind.EXECUTOR
    #: whether cells run outside the driver's process (they then log through a tracking server)
    separate_processes: ClassVar[bool] = True
    #: whether cells may run on other machines (a store on this machine's disk cannot be reached)
    remote: ClassVar[bool] = False

    def run(self, jobs: Sequence[Any], sweep: Any) -> Any:
        """Run ``jobs`` (:class:`relforge.bench.sweep.CellJob`); an iterator
        of their result records (dicts, :func:`relforge.bench.sweep.run_job`'s
        return value), yielded as each cell ends, in any order. ``sweep`` is
        the driver's :class:`relforge.bench.sweep.Sweep`: call
        ``sweep.started(job, handle)`` when a job starts (``handle``: what
        :meth:`alive` needs to find it again, e.g. a process id or a
        scheduler's job id; it is saved in the sweep's ``sweep.json``)."""
        raise NotImplementedError

    def check(self) -> None:
        """Refuse early (a :class:`relforge.validation.ConfigError` with the
        way out) when this executor cannot run here, before the driver
        touches the run store; not called for ``--dry-run``."""

    def describe(self, jobs: Sequence[Any], sweep: Any) -> list[str]:
        """What :meth:`run` would submit, one line each (``--dry-run``)."""
        return [f"{type(self).name}: {job.cell_id}" for job in jobs]

    def alive(self, handle: Any, sweep: Any) -> bool:
        """Whether the job recorded with ``handle`` may still be running
        (``--attach`` waits for it); False when it is known to be gone."""
        return False


# --- methods ---------------------------------------------------------------

@dataclass
class Method:
    """A named recipe: the default configuration that picks components by
    name, the model included (``model: {name: relforge.seq2seq, ...}``). A
    user's configuration is merged on top of ``defaults``."""

    name: str
    defaults: dict[str, Any]
    description: str = ""
    kind: ClassVar[ComponentKind] = ComponentKind.METHOD


# --- the table of kinds ------------------------------------------------------

@dataclass(frozen=True)
class KindSpec:
    """One component kind: its hook, its base class, and where the
    configuration selects it (``section``: a key path selecting one, a list
    section with ``many``, or None for methods)."""

    kind: ComponentKind
    hook: str
    base: type
    section: str | None
    many: bool = False


KINDS: tuple[KindSpec, ...] = (
    KindSpec(ComponentKind.TEMPLATE, "register_templates", Template, "template"),
    KindSpec(ComponentKind.DECODER, "register_decoders", Decoder, "decoder"),
    KindSpec(ComponentKind.RETRIEVER, "register_retrievers", Retriever, "retriever"),
    KindSpec(ComponentKind.LOSS, "register_losses", Loss, "loss"),
    KindSpec(ComponentKind.PRETRAINING_STAGE, "register_pretraining_stages", PretrainingStage, "pretraining",
             many=True),
    KindSpec(ComponentKind.DATASET, "register_datasets", Dataset, "data.dataset"),
    KindSpec(ComponentKind.MODEL, "register_models", REModel, "model"),
    KindSpec(ComponentKind.METHOD, "register_methods", Method, None),
    KindSpec(ComponentKind.EXECUTOR, "register_executors", Executor, None),
)
KIND_SPECS: dict[ComponentKind, KindSpec] = {s.kind: s for s in KINDS}
HOOK_FOR_KIND: dict[ComponentKind, str] = {s.kind: s.hook for s in KINDS}
BASE_FOR_KIND: dict[ComponentKind, type] = {s.kind: s.base for s in KINDS}
#: configuration key path -> kind, for the sections that select one component
COMPONENT_SECTIONS: dict[str, ComponentKind] = {s.section: s.kind for s in KINDS if s.section and not s.many}
#: list sections of components (``pretraining``)
LIST_SECTIONS: dict[str, ComponentKind] = {s.section: s.kind for s in KINDS if s.section and s.many}
