"""One training loop for CPU, one GPU or several processes (Accelerate).

The loop is method-agnostic: a model is a ``torch.nn.Module`` (an
:class:`~relforge.components.REModel`) whose ``forward(batch)`` returns a
:class:`~relforge.components.ModelOutput` with a scalar ``loss``; a model with
the :class:`~relforge.components.HasParameterGroups` ability gives its parts
(retriever, prompts, backbone) their own learning rates through
``train.group_learning_rates``.

Determinism and resume: the order of examples in epoch ``e`` is a permutation
seeded by ``seed + e``; the resumable checkpoint (``checkpoint/``) holds the
model (safetensors), optimizer, scheduler, RNG states and the loop's position,
so a resumed run continues from the saved step and reaches the same result as
an uninterrupted one. A finished run whose model is kept in ``best/``
(``save_best_fn``) keeps only the loop's state in ``checkpoint/``, and its
last step's weights are not saved there: a run interrupted after its last
step, during its final dev evaluation, resumes from the checkpoint before and
trains that stretch again (with per-epoch evaluation this was always so, the
last evaluation coming before the last save).
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from relforge.components import ReportsDiagnostics
from relforge.config import TrainConfig
from relforge.engine.checkpoint import (
    find_checkpoint, is_state_only, read_state, remove_folder, share_files, swap_in, write_atomically,
    write_state,
)
from relforge.engine.precision import resolve as resolve_precision

#: precision notes already shown in this process (a run's stages would repeat them)
_SAID: set[str] = set()


def _accelerator(mixed_precision: str, gradient_accumulation_steps: int, *, cpu: bool):
    """An Accelerator in ``mixed_precision``. Accelerate keeps the precision in
    process-wide state and refuses a second one; in a single process (a suite's
    cells run one after another) that state is reset for the new run's
    precision; across launched processes every run of the launch has the same."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    shared = getattr(AcceleratorState, "_shared_state", None)
    if shared and shared.get("_mixed_precision") not in (None, mixed_precision) and PartialState().num_processes == 1:
        AcceleratorState._reset_state()
    return Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=gradient_accumulation_steps,
                       cpu=cpu)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class EpochSeededSampler(Sampler[int]):
    """A random permutation per epoch, seeded by ``seed + epoch``."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


@dataclass
class TrainerState:
    global_step: int = 0          # optimizer steps taken
    epoch: int = 0                # current epoch (0-based)
    batches_in_epoch: int = 0     # micro-batches of the current epoch already consumed
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0            # evaluations since the last improvement
    history: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False


@dataclass
class TrainResult:
    state: TrainerState
    best_dir: Path | None
    last_metrics: dict[str, float]
    stopped_early: bool


class Trainer:
    def __init__(self, model: torch.nn.Module, train_data: Sequence[Any], collate_fn: Callable,
                 settings: TrainConfig, output_dir: str | Path, *, seed: int = 42,
                 evaluate_fn: Callable[[torch.nn.Module], Mapping[str, float]] | None = None,
                 save_best_fn: Callable[[torch.nn.Module, Path], None] | None = None,
                 run=None, accelerator=None, progress: bool = True,
                 step_callback: Callable[[TrainerState], None] | None = None, metric_prefix: str = "train",
                 label: str = "train") -> None:
        from accelerate.utils import set_seed

        self.settings = settings
        self.output_dir = Path(output_dir)
        self.seed = seed
        self.run = run
        self.evaluate_fn = evaluate_fn
        self.save_best_fn = save_best_fn
        self.step_callback = step_callback
        self.progress = progress
        #: logged metrics are <metric_prefix>/loss, /lr and /<diagnostic>; ``label`` names the progress step
        self.metric_prefix, self.label = metric_prefix, label
        #: the mean loss of every optimizer step taken in this process (not restored on resume)
        self.step_losses: list[float] = []
        #: the step of the last full checkpoint this loop wrote (None: none yet)
        self._saved_step: int | None = None
        #: the autocast mode the steps run in (``train.mixed_precision`` on this machine: see precision.py)
        mp, note = resolve_precision(settings.mixed_precision)
        self.precision = mp
        cpu = not torch.cuda.is_available()
        # on a CPU the step's forward runs under torch.autocast here (_step), and Accelerate stays in full
        # precision: its precision is process-wide state, which a later run in the same process (the next
        # cell of a suite) could not change; on a GPU Accelerate's autocast and loss scaling (fp16) are used
        self._cpu_autocast = cpu and mp == "bf16"
        # cpu=True where there is no GPU: Accelerate then runs several launched
        # processes as MULTI_CPU (gloo) instead of as independent single processes
        self.accelerator = accelerator or _accelerator("no" if cpu else mp, settings.gradient_accumulation_steps,
                                                       cpu=cpu)
        if note is not None and note not in _SAID:
            _SAID.add(note)
            self.accelerator.print(note)
        if run is not None:
            run.set_tags({"precision": mp})
        set_seed(seed)
        self.sampler = EpochSeededSampler(len(train_data), seed)
        # its own generator: creating an iterator draws a seed from it, which
        # must not consume the global RNG (dropout) differently after a resume
        loader = DataLoader(list(train_data), batch_size=settings.batch_size, sampler=self.sampler,
                            collate_fn=collate_fn, drop_last=False,
                            generator=torch.Generator().manual_seed(seed))
        optimizer = torch.optim.AdamW(self._param_groups(model), lr=settings.learning_rate,
                                      weight_decay=settings.weight_decay)
        self.model, self.optimizer, self.loader = self.accelerator.prepare(model, optimizer, loader)
        self.total_steps = self._total_steps()
        self.scheduler = self.accelerator.prepare(self._scheduler(self.optimizer))
        self.state = TrainerState()
        self._diagnostics: dict[str, list[float]] = {}

    # ---- set-up --------------------------------------------------------------

    def _param_groups(self, model: torch.nn.Module) -> list[dict]:
        from relforge.components import HasParameterGroups

        named = model.parameter_groups() if isinstance(model, HasParameterGroups) else {
            "default": list(model.parameters())}
        lrs = self.settings.group_learning_rates
        unknown = set(lrs) - set(named)
        if unknown:
            raise ValueError(f"train.group_learning_rates names unknown parameter groups {sorted(unknown)}; "
                             f"this model has {sorted(named)}")
        seen: set[int] = set()
        groups = []
        for name, params in named.items():
            params = [p for p in params if p.requires_grad and id(p) not in seen]
            seen.update(id(p) for p in params)
            if params:
                groups.append({"params": params, "lr": lrs.get(name, self.settings.learning_rate), "name": name})
        return groups

    def _total_steps(self) -> int:
        per_epoch = math.ceil(len(self.loader) / self.settings.gradient_accumulation_steps)
        total = math.ceil(per_epoch * self.settings.epochs)
        return min(total, self.settings.max_steps) if self.settings.max_steps else total

    def _scheduler(self, optimizer):
        from transformers import (get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup,
                                  get_linear_schedule_with_warmup)

        warmup = int(self.settings.warmup_ratio * self.total_steps)
        if self.settings.lr_schedule == "constant":
            return get_constant_schedule_with_warmup(optimizer, warmup)
        make = get_cosine_schedule_with_warmup if self.settings.lr_schedule == "cosine" \
            else get_linear_schedule_with_warmup
        return make(optimizer, warmup, max(self.total_steps, 1))

    # ---- checkpoints -------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoint"

    @property
    def best_dir(self) -> Path:
        return self.output_dir / "best"

    def save_checkpoint(self) -> None:
        """Write the resumable state into a temporary folder on every process
        (Accelerate writes the model and optimizer on the main process and each
        process's RNG state), then swap it in atomically on the main process."""
        acc = self.accelerator
        tmp = self.checkpoint_dir.with_name(f".{self.checkpoint_dir.name}.tmp")
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        # tied weights (a decoder's output and input embeddings) are stored
        # once and tied again on load; Accelerate warns about it at every save
        shared = logging.getLogger("accelerate.utils.other")
        level = shared.level
        shared.setLevel(logging.ERROR)
        try:
            acc.save_state(str(tmp), safe_serialization=True)
        finally:
            shared.setLevel(level)
        acc.wait_for_everyone()
        if acc.is_main_process:
            write_state(tmp, asdict(self.state))
            share_files(tmp)
            swap_in(tmp, self.checkpoint_dir)
        acc.wait_for_everyone()
        self._saved_step = self.state.global_step

    def _write_state_only(self) -> None:
        """Replace the loop's state (``trainer_state.json``) in the current
        checkpoint, atomically, leaving its weights and optimizer as they are."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            write_state(self.checkpoint_dir, asdict(self.state))
        acc.wait_for_everyone()

    @property
    def _keeps_best(self) -> bool:
        """Whether the run's model is kept in ``best/`` (``save_best_fn``):
        then a finished run's checkpoint holds only the loop's state, since
        nothing reads its weights or optimizer again (a resumed finished run
        returns ``best/``), and the last save before finishing is not made."""
        return self.save_best_fn is not None

    def _save_finished_state(self) -> None:
        """Swap in a checkpoint of the finished loop's state alone (the
        earlier checkpoint's weights and optimizer are removed with it)."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            write_atomically(self.checkpoint_dir, lambda d: write_state(d, asdict(self.state)))
        acc.wait_for_everyone()

    def load_checkpoint(self) -> bool:
        from relforge.validation import InputError

        folder = find_checkpoint(self.checkpoint_dir)
        if folder is None:
            return False
        try:
            state = TrainerState(**read_state(folder))
            state_only = state.finished and is_state_only(folder)
            if not state_only:
                self.accelerator.load_state(str(folder))
        except Exception as exc:  # noqa: BLE001 - any damage: one message naming the folder and the way out
            raise InputError(f"{folder}: the checkpoint is damaged and cannot be resumed ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}); start afresh with --no-resume (the checkpoint "
                             f"is replaced), or use another --output-dir") from exc
        self.state = state
        if state_only:  # a finished run that kept its model in best/ (_save_finished_state)
            if self.save_best_fn is None or not self.best_dir.exists():
                raise InputError(f"{folder}: the run has finished and kept its model in {self.best_dir}, which "
                                 f"is missing; train it again with --no-resume, or use another --output-dir")
            return True
        self._check_random_states(folder)
        return True

    def _check_random_states(self, folder: Path) -> None:
        """Accelerate skips random states it cannot load with a log line at
        INFO level; say it, since the resumed run then differs from an
        uninterrupted one (dropout masks, and data order where the sampler
        does not fix it)."""
        from accelerate.utils import load

        path = Path(folder) / f"random_states_{self.accelerator.process_index}.pkl"
        try:
            load(path)
        except Exception as exc:  # noqa: BLE001 - whatever accelerate could not read
            self.random_states_restored = False
            self.accelerator.print(f"warning: {path} could not be loaded ({type(exc).__name__}); the resumed run's "
                                   f"random state (dropout) differs from an uninterrupted run's")
        else:
            self.random_states_restored = True

    # ---- the loop --------------------------------------------------------

    def train(self, resume: bool = True) -> TrainResult:
        acc = self.accelerator
        s = self.settings
        if resume and self.load_checkpoint():
            acc.print(f"resuming from {self.checkpoint_dir} at step {self.state.global_step} "
                      f"(epoch {self.state.epoch}, batch {self.state.batches_in_epoch})")
        elif not resume and acc.is_main_process:
            # afresh: an earlier attempt's checkpoint and selected model go now, not at this run's first save
            # (a crash before that would otherwise resume the earlier run, find it finished, or leave its model)
            remove_folder(self.checkpoint_dir)
            if self._keeps_best:
                remove_folder(self.best_dir)
        acc.wait_for_everyone()
        if self.state.finished:
            return TrainResult(self.state, self.best_dir if self.best_dir.exists() else None, {}, False)
        num_epochs = math.ceil(s.epochs)
        self._last_eval: dict[str, float] = {}
        self._last_eval_step: int | None = None
        stop = False
        running: list[float] = []
        t0, step0 = time.perf_counter(), self.state.global_step
        logged_step = self.state.global_step
        bar = _Progress(self.total_steps, enabled=self.progress and acc.is_local_main_process, label=self.label,
                        done=self.state.global_step)
        try:
            while self.state.epoch < num_epochs and not self._done():
                loader = self.loader
                if self.state.batches_in_epoch:
                    loader = acc.skip_first_batches(self.loader, self.state.batches_in_epoch)
                # Accelerate's loaders re-set the sampler's epoch from their own
                # iteration counter when iterated; give them the real epoch
                for dl in (self.loader, loader):
                    if hasattr(dl, "set_epoch"):
                        dl.set_epoch(self.state.epoch)
                self.sampler.set_epoch(self.state.epoch)
                self.model.train()
                for batch in loader:
                    loss = self._step(batch)
                    self.state.batches_in_epoch += 1
                    running.append(loss)
                    if not acc.sync_gradients:
                        continue
                    self.state.global_step += 1
                    ga = s.gradient_accumulation_steps
                    self.step_losses.append(sum(running[-ga:]) / len(running[-ga:]))
                    speed = (self.state.global_step - step0) / max(time.perf_counter() - t0, 1e-9)
                    bar.advance(1, loss=sum(running[-20:]) / len(running[-20:]), speed=speed)
                    if self.state.global_step % s.log_every == 0:
                        self._log_window(running, s.log_every)
                        logged_step = self.state.global_step
                    if self.step_callback is not None:
                        self.step_callback(self.state)
                    if isinstance(s.eval_every, int) and self.state.global_step % s.eval_every == 0:
                        self._evaluate()
                        stop = self._should_stop()
                    last = stop or self._done() or (self.state.epoch == num_epochs - 1
                                                    and self.state.batches_in_epoch >= len(self.loader))
                    if isinstance(s.save_every, int) and self.state.global_step % s.save_every == 0 and not (
                            last and self._keeps_best):
                        self.save_checkpoint()
                    if stop or self._done():
                        break
                if self.state.batches_in_epoch >= len(self.loader):
                    self.state.epoch += 1
                    self.state.batches_in_epoch = 0
                    acc.print(f"epoch {self.state.epoch}/{num_epochs}: step {self.state.global_step}/"
                              f"{self.total_steps}, loss {sum(running[-50:]) / max(len(running[-50:]), 1):.4f}, "
                              f"{(self.state.global_step - step0) / max(time.perf_counter() - t0, 1e-9):.2f} steps/s")
                    if s.eval_every == "epoch":
                        self._evaluate()
                        stop = self._should_stop()
                    last = stop or self._done() or self.state.epoch >= num_epochs
                    if s.save_every == "epoch" and not (last and self._keeps_best):
                        self.save_checkpoint()
                if stop:
                    break
            if self.state.global_step > logged_step and self.step_losses:  # the steps since the last log line
                self._log_window(running, self.state.global_step - logged_step)
            if self.evaluate_fn is not None and self._last_eval_step != self.state.global_step:
                self._evaluate()
            if self._keeps_best and (self.state.best_step is None or not self.best_dir.exists()) \
                    and acc.is_main_process:
                if self.state.best_step is not None:
                    acc.print(f"warning: {self.best_dir} (the model selected on dev at step {self.state.best_step}) "
                              f"is missing: the final model (step {self.state.global_step}) is kept there instead")
                    self.state.best_step = self.state.global_step
                    self.state.best_metric = self._last_eval.get(self.settings.select_metric)
                # no dev evaluation selected a model (there was none): the final model is the run's, kept
                # before the finished state is written, since a resumed finished run reads it from best/
                # (a best/ left by an earlier attempt in the folder is replaced)
                write_atomically(self.best_dir, lambda d: self.save_best_fn(acc.unwrap_model(self.model), d))
            acc.wait_for_everyone()
            self.state.finished = True
            if self._keeps_best:
                self._save_finished_state()
            elif self._saved_step == self.state.global_step and find_checkpoint(self.checkpoint_dir) == \
                    self.checkpoint_dir:
                # the weights, optimizer and scheduler were saved at this very step (the last epoch's
                # checkpoint): the finished state is all that changed, and all a finished run reads back
                self._write_state_only()
            else:
                self.save_checkpoint()
        finally:
            bar.close()
        best = self.best_dir if self._keeps_best else None
        return TrainResult(self.state, best, dict(self._last_eval), stop)

    def _step(self, batch: Any) -> float:
        acc = self.accelerator
        with acc.accumulate(self.model):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._cpu_autocast):
                loss = self.model(batch).loss
            loss = loss.float()
            finite = torch.isfinite(loss.detach()).float().reshape(1)
            if acc.gather(finite).min() < 1:
                where = "" if self.metric_prefix == "train" else f"{self.label}: "
                raise NonFiniteLossError(
                    f"{where}the training loss became {float(loss.detach())} at step {self.state.global_step} "
                    f"(epoch {self.state.epoch}); stopping. The last good checkpoint is "
                    f"{find_checkpoint(self.checkpoint_dir) or '(none saved yet)'}. "
                    f"Try a lower learning rate, gradient clipping or full precision.")
            acc.backward(loss)
            if acc.sync_gradients:
                self._gather_diagnostics()
            if acc.sync_gradients and self.settings.max_grad_norm:
                acc.clip_grad_norm_(self.model.parameters(), self.settings.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
        return float(loss.detach())

    def _log_window(self, running: Sequence[float], steps: int) -> None:
        """The mean loss of the last ``steps`` optimizer steps, the learning
        rate and the diagnostics gathered since the last log."""
        window = running[-steps * self.settings.gradient_accumulation_steps:]
        self._log({f"{self.metric_prefix}/loss": sum(window) / len(window),
                   f"{self.metric_prefix}/lr": self.scheduler.get_last_lr()[0], **self._take_diagnostics()})

    def _gather_diagnostics(self) -> None:
        """A model that reports diagnostics (``ReportsDiagnostics``) is asked
        for them after each optimizer step's backward pass."""
        model = self.accelerator.unwrap_model(self.model)
        if isinstance(model, ReportsDiagnostics):
            for key, value in model.step_diagnostics().items():
                self._diagnostics.setdefault(key, []).append(float(value))

    def _take_diagnostics(self) -> dict[str, float]:
        out = {f"{self.metric_prefix}/{k}": sum(v) / len(v) for k, v in self._diagnostics.items() if v}
        self._diagnostics = {}
        return out

    def _log(self, metrics: Mapping[str, float]) -> None:
        if self.run is not None and self.accelerator.is_main_process:
            self.run.log_metrics(metrics, self.state.global_step)

    def _done(self) -> bool:
        return self.state.global_step >= self.total_steps

    def _evaluate(self) -> dict[str, float]:
        if self.evaluate_fn is None:
            return {}
        acc = self.accelerator
        from accelerate.utils import broadcast_object_list

        holder: list[Any] = [None]
        if acc.is_main_process:
            self.model.eval()
            with torch.no_grad():
                holder[0] = {k: float(v) for k, v in self.evaluate_fn(acc.unwrap_model(self.model)).items()}
            self.model.train()
        if acc.num_processes > 1:
            broadcast_object_list(holder)
        metrics = holder[0]
        step = self.state.global_step
        self._last_eval, self._last_eval_step = metrics, step
        self.state.history.append({"step": step, "epoch": self.state.epoch, **metrics})
        self._log({f"dev/{k}": v for k, v in metrics.items()})
        key = self.settings.select_metric
        if key not in metrics:
            raise KeyError(f"train.select_metric {key!r} is not among the dev metrics {sorted(metrics)}")
        value = metrics[key]
        better = self.state.best_metric is None or (
            value > self.state.best_metric if self.settings.select_mode == "max" else value < self.state.best_metric)
        if better:
            self.state.best_metric, self.state.best_step, self.state.bad_evals = value, step, 0
            if self.save_best_fn is not None and acc.is_main_process:
                write_atomically(self.best_dir, lambda d: self.save_best_fn(acc.unwrap_model(self.model), d))
            acc.wait_for_everyone()
        else:
            self.state.bad_evals += 1
        return metrics

    def _should_stop(self) -> bool:
        p = self.settings.early_stopping_patience
        return p is not None and self.state.bad_evals >= p


class _Progress:
    """The training step of the progress display (:mod:`relforge.progress`),
    with the running loss and speed, on the main process only; no loss is
    shown before the first optimizer step has one."""

    def __init__(self, total: int, enabled: bool, label: str = "train", done: int = 0) -> None:
        from relforge import progress

        self._cm = progress.task(label, total=total, unit="steps", done=done) if enabled else None
        self.task = self._cm.__enter__() if self._cm is not None else None
        if self.task is not None:
            self.task.update(status="first step ...")

    def advance(self, n: int, **fields: float) -> None:
        if self.task is not None:
            status = None
            if "loss" in fields:
                status = f"loss {fields['loss']:.4f}"
            self.task.advance(n, status=status)

    def close(self) -> None:
        if self._cm is not None:
            cm, self._cm = self._cm, None
            cm.__exit__(None, None, None)
