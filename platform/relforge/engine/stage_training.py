"""Pretraining stages through the engine's training loop.

A stage that trains (TKRE's masked span LM and contrastive stages, ETRAG's
retriever warm-up) gives :func:`train_stage` a module whose
``forward(batch)`` returns a :class:`~relforge.components.ModelOutput` with a
``loss``, its examples and a collate function, and gets what fine-tuning gets
from :class:`~relforge.engine.trainer.Trainer`: Accelerate (the run's
``train.mixed_precision`` on a GPU, several processes), gradient clipping,
per-group learning rates (``HasParameterGroups``), logged diagnostics
(``ReportsDiagnostics``, as ``<prefix>/<name>``), the progress display, and a
resumable checkpoint in the stage's own folder (``<run>/pretraining-<i>/
<name>/checkpoint``): a run interrupted during a stage resumes it from the saved
step, and a stage that finished is not run again when its run resumes. Once
fine-tuning has finished, the pipeline removes the stages' checkpoints (the
run's own checkpoint holds their result, or, once the run has finished, its
selected model in ``best/``), and a run that resumes from its own checkpoint
does not train its stages again (``StageContext.superseded``).

Randomness inside ``forward`` (masking, sampling negatives) should draw from
the global generators (``torch``, ``random``): the checkpoint saves and
restores them, so a resumed stage continues as an uninterrupted one would.
"""
from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from relforge.components import StageContext
from relforge.config import TrainConfig
from relforge.engine.trainer import Trainer, TrainResult


def stage_train_config(context: StageContext, **settings: Any) -> TrainConfig:
    """The stage's loop settings: ``settings`` (epochs, max_steps,
    batch_size, learning_rate, weight_decay, max_grad_norm, log_every,
    group_learning_rates, lr_schedule ...) over a constant learning rate
    without warm-up, and the run's ``train.mixed_precision``."""
    base: dict[str, Any] = {"lr_schedule": "constant", "warmup_ratio": 0.0, "gradient_accumulation_steps": 1,
                            "save_every": "epoch", "eval_every": "epoch", "early_stopping_patience": None}
    run_train = getattr(getattr(context.resolved, "run", None), "train", None)
    if run_train is not None:
        base["mixed_precision"] = run_train.mixed_precision
    return TrainConfig.model_validate({**base, **{k: v for k, v in settings.items() if v is not None or k in (
        "max_steps", "max_grad_norm")}})


def train_stage(module: torch.nn.Module, items: Sequence[Any], collate: Callable[[Sequence[Any]], Any], *,
                context: StageContext, name: str, settings: Mapping[str, Any]
                ) -> tuple[TrainResult | None, Trainer | None]:
    """Train ``module`` on ``items`` with the engine's loop; metrics are
    logged as ``<name>/loss``, ``<name>/lr`` and ``<name>/<diagnostic>``.
    Returns the loop's result and the trainer (``step_losses``), or
    ``(None, None)`` when ``context.superseded`` (nothing to train again)."""
    if not items:
        raise ValueError(f"{name}: nothing to train on (no examples)")
    if superseded(context, name):
        return None, None
    cfg = stage_train_config(context, **dict(settings))
    with contextlib.ExitStack() as stack:
        base = Path(context.output_dir)
        if base == Path(".") and context.run is None:  # a stage run by hand: its checkpoint is not left behind
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="relforge-stage-")))
        # a folder of the stage's own (by its last name part) inside the stage's folder: a checkpoint another
        # stage left in a shared folder is never resumed as this one's
        folder = base / name.split("/")[-1]
        trainer = Trainer(module, items, collate, cfg, folder, seed=context.seed, run=context.run,
                          progress=context.progress, metric_prefix=name, label=name)
        result = trainer.train(resume=context.resume)
    if not trainer.step_losses and result.state.finished:
        print(f"{name}: finished earlier ({trainer.checkpoint_dir}, step {result.state.global_step}); "
              f"its weights were loaded from there")
    return result, trainer


def superseded(context: StageContext, name: str) -> bool:
    """Whether the run resumes from its own fine-tuning checkpoint (which
    holds what the stage trained): said once, for a stage to return early
    before any costly set-up."""
    if context.superseded and context.resume:
        print(f"{name}: not trained again: the run resumes from its own checkpoint, which holds this stage's result "
              f"(or, once the run has finished, its model in best/)")
        return True
    return False


def epochs_for_steps(steps: int, n_items: int, batch_size: int) -> float:
    """Enough epochs for ``steps`` optimizer steps over ``n_items`` examples."""
    return float(max(1, math.ceil(steps / max(1, math.ceil(n_items / batch_size)))))
