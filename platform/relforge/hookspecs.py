"""Hook specifications: the contract between the RelForge core and its plugins.

Every hook is documented here, where it is specified: its arguments, what it
returns and when the core calls it. ``tests/test_hookspecs.py`` fails when a
hook lacks any of those sections or when no test exercises it.

Registration hooks follow the register-callback style: the core passes a
``register`` function and the plugin calls it once per component it offers,
so the core keeps control of naming, duplicate detection and validation.

``register(component, *, name=None, aliases=(), description=None)``

* ``component``: a class derived from the kind's base class in
  :mod:`relforge.components` (for methods, a :class:`relforge.components.Method`
  instance). Its ``Settings`` attribute is a pydantic model of its
  configuration.
* ``name``: the short name; defaults to the class's ``name`` attribute. The
  full name is ``<plugin>.<name>``; the short name also works wherever it is
  unambiguous across plugins.
* ``aliases``: further global names. An alias (and a method name) claimed by
  two plugins is refused with an error that names both.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from relforge.run import Run

#: the ``register`` callback a registration hook receives
Register = Callable[..., None]

PROJECT_NAME = "relforge"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_templates(register: Register) -> None:
    """Offer templates: turn an example into model input and target text(s).

    Arguments:
        register: callback; call ``register(TemplateClass)`` once per
            template. The class derives from :class:`relforge.components.Template`.

    Returns:
        Nothing; the return value is ignored.

    Called:
        Once per plugin when the registry loads plugins (at the first
        ``get_registry()`` call or ``Registry.load()``), before any run.
    """


@hookspec
def register_decoders(register: Register) -> None:
    """Offer decoders: rank candidate relations for a batch of inputs.

    Arguments:
        register: callback; call ``register(DecoderClass)`` once per decoder.
            The class derives from :class:`relforge.components.Decoder`.

    Returns:
        Nothing; the return value is ignored.

    Called:
        Once per plugin when the registry loads plugins, before any run.
    """


@hookspec
def register_retrievers(register: Register) -> None:
    """Offer retrievers: select memory instances (possibly softly) for a query.

    Arguments:
        register: callback; call ``register(RetrieverClass)`` once per
            retriever. The class derives from :class:`relforge.components.Retriever`.

    Returns:
        Nothing; the return value is ignored.

    Called:
        Once per plugin when the registry loads plugins, before any run.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Offer training losses.

    Arguments:
        register: callback; call ``register(LossClass)`` once per loss. The
            class derives from :class:`relforge.components.Loss`.

    Returns:
        Nothing; the return value is ignored.

    Called:
        Once per plugin when the registry loads plugins, before any run.
    """


@hookspec
def register_pretraining_stages(register: Register) -> None:
    """Offer pretraining stages that run before fine-tuning.

    Arguments:
        register: callback; call ``register(StageClass)`` once per stage. The
            class derives from :class:`relforge.components.PretrainingStage`.

    Returns:
        Nothing; the return value is ignored.

    Called:
        Once per plugin when the registry loads plugins, before any run.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Offer dataset readers.

    Arguments:
        register: callback; call ``register(DatasetClass)`` once per dataset.
            The class derives from :class:`relforge.components.Dataset`.

    Returns:
        Nothing; the return value is ignored.

    Called:
        Once per plugin when the registry loads plugins, before any run.
    """


@hookspec
def register_models(register: Register) -> None:
    """Offer RE models: the trainable part that templates, losses, decoders and
    retrievers plug into.

    Arguments:
        register: callback; call ``register(ModelClass)`` once per model. The
            class derives from ``torch.nn.Module`` and
            :class:`relforge.components.REModel`; its ``Settings`` derives from
            :class:`relforge.components.ModelSettings` (backbone, lengths,
            frozen embeddings) and adds the model's own options. It declares
            the sections it ``uses``/``needs`` and the abilities it
            ``provides``, which configuration validation checks against the
            other components' ``requires``.

    Returns:
        Nothing; the return value is ignored.

    Called:
        Once per plugin when the registry loads plugins, before any run.
    """


@hookspec
def register_methods(register: Register) -> None:
    """Offer methods: named recipes whose default configuration picks components.

    Arguments:
        register: callback; call ``register(Method(name=..., defaults={...}))``
            once per method (:class:`relforge.components.Method`); the
            defaults pick the model too (``model: {name: ...}``). Method
            names are global: two plugins cannot register the same one.

    Returns:
        Nothing; the return value is ignored.

    Called:
        Once per plugin when the registry loads plugins, before any run.
    """


@hookspec
def register_executors(register: Register) -> None:
    """Offer executors: where a benchmark suite's cells run (``relforge bench
    SUITE --executor NAME``): in this process, in processes on this machine,
    on a cluster scheduler.

    Arguments:
        register: callback; call ``register(ExecutorClass)`` once per
            executor. The class derives from
            :class:`relforge.components.Executor`; its ``Settings`` come from
            the suite file's ``executor:`` section and ``--executor-set``.

    Returns:
        Nothing; the return value is ignored.

    Called:
        Once per plugin when the registry loads plugins, before any run; the
        executor itself is built by ``relforge bench`` when a suite starts.
    """


@hookspec
def on_run_start(run: Run) -> None:
    """A run (training, evaluation, a benchmark cell) has started.

    Trackers open their run here (the MLflow tracker starts an MLflow run and
    logs the flattened resolved configuration and tags).

    Arguments:
        run: the :class:`relforge.run.Run`; ``run.config`` is the resolved
            configuration as a plain dict (secrets redacted), ``run.tags``
            its tags, ``run.output_dir`` its folder, and ``run.state`` a dict
            where a tracker may keep its own state under its plugin name.

    Returns:
        Nothing; the return value is ignored.

    Called:
        By ``Run.__enter__`` once the resolved configuration has been saved to
        ``run.output_dir/config.yaml``, before any training or evaluation.
    """


@hookspec
def on_metrics(run: Run, metrics: dict[str, float], step: int | None) -> None:
    """Metrics were computed.

    Arguments:
        run: the :class:`relforge.run.Run`.
        metrics: dict of metric name (``dev/micro_f1``) to float.
        step: int, the global step or epoch the metrics belong to, or None.

    Returns:
        Nothing; the return value is ignored.

    Called:
        By ``Run.log_metrics`` each time the engine evaluates or logs training
        statistics.
    """


@hookspec
def on_tags(run: Run, tags: dict[str, str]) -> None:
    """Tags (short string facts about a run) were set after it started.

    Arguments:
        run: the :class:`relforge.run.Run`.
        tags: dict of tag name (``tkre.generate.generated_knowledge``) to str.

    Returns:
        Nothing; the return value is ignored.

    Called:
        By ``Run.set_tags``, which components (a pretraining stage, a model)
        call to record facts about the run that are known only while it
        runs; the run's starting tags reach trackers through
        ``on_run_start`` (``run.tags``).
    """


@hookspec
def on_dataset(run: Run, name: str, split: str, digest: str, source: str, examples: int) -> None:
    """A run read a data split (what MLflow shows as a run's dataset input).

    Arguments:
        run: the :class:`relforge.run.Run`.
        name: str, the data set's registered name (``relforge.semeval``).
        split: str, the role it plays in the run (``train``, ``dev``, ``test``).
        digest: str, a short hash of the split's examples (ids, spans and
            labels, after sampling), so two runs can be seen to share data.
        source: str, where it was read from (a folder, or the data set name).
        examples: int, how many examples the split holds.

    Returns:
        Nothing; the return value is ignored.

    Called:
        By ``Run.log_dataset``, which the pipeline calls once per split after
        loading and sampling the data.
    """


@hookspec
def on_artifact(run: Run, path: Path, artifact_path: str | None) -> None:
    """A file was produced that belongs to the run (predictions, figures, tables).

    Arguments:
        run: the :class:`relforge.run.Run`.
        path: :class:`pathlib.Path` of the local file.
        artifact_path: str or None, the folder inside the run's artifact store
            where the file belongs.

    Returns:
        Nothing; the return value is ignored.

    Called:
        By ``Run.log_artifact`` after the file has been written.
    """


@hookspec
def on_model(run: Run, folder: Path) -> None:
    """The run's selected model is final (trained, selected on dev, its
    decision threshold tuned): a tracker may log it as a loadable model.

    Arguments:
        run: the :class:`relforge.run.Run`.
        folder: :class:`pathlib.Path` of the saved model folder (what
            ``Extractor.from_pretrained`` loads).

    Returns:
        Nothing; the return value is ignored.

    Called:
        By ``Run.log_model``, which the pipeline calls once after test scoring
        (the built-in MLflow tracker logs the folder as an MLflow ``pyfunc``
        model under ``model``, unless ``tracking.log_model`` is false).
    """


@hookspec
def on_run_end(run: Run, status: str, error: BaseException | None) -> None:
    """A run has ended.

    Arguments:
        run: the :class:`relforge.run.Run`.
        status: ``"FINISHED"``, ``"FAILED"`` or ``"KILLED"`` (interrupted).
        error: the exception that ended the run, or None.

    Returns:
        Nothing; the return value is ignored.

    Called:
        By ``Run.__exit__``, whether the run succeeded or not; trackers close
        their run here.
    """
