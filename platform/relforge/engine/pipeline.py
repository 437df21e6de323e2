"""One run end to end: data -> model -> pretraining -> training -> evaluation -> tracking.

``train_run`` is what ``relforge train`` and every benchmark cell call.
"""
from __future__ import annotations

import csv
import subprocess
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from relforge.components import ReportsDiagnostics
from relforge.config import ResolvedConfig
from relforge.data.example import Example
from relforge.engine.checkpoint import share_files
from relforge.engine.decision import decide


@dataclass
class RunOutcome:
    output_dir: Path
    model_dir: Path | None
    dev_metrics: dict[str, float]
    test_metrics: dict[str, float]
    tracking: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    # other metrics the run logged, under their logged names (``dev/tuned_threshold``, ...)
    logged: dict[str, float] = field(default_factory=dict)


def headline_metric(metric: str) -> str:
    return {"semeval": "official_macro_f1", "episode_accuracy": "accuracy"}.get(metric, "micro_f1")


#: where the pretraining stages' resumable checkpoints are in a run folder (run_pretraining, train_stage)
STAGE_CHECKPOINTS = "pretraining-*/*/checkpoint"


def rank_by_length(model, examples: Sequence[Example], batch_size: int) -> list:
    """``model.rank`` in length-sorted batches (less padding), the rankings
    returned in the examples' order."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].text))
    rankings: list = [None] * len(order)
    for i, r in zip(order, model.rank([examples[i] for i in order], batch_size=batch_size)):
        rankings[i] = r
    return rankings


def predict_sets(model, examples: Sequence[Example], resolved: ResolvedConfig, batch_size: int, decision=None,
                 label: str = "predict", by_length: bool = False):
    """(predicted sets, rankings); ``decision`` replaces the run's decision
    settings; ``label`` names the step in the progress display; with
    ``by_length`` the examples are ranked in length-sorted batches (less
    padding; ``relforge evaluate``) and returned in their order."""
    from relforge import progress

    with progress.task(label, total=len(examples)):
        rankings = rank_by_length(model, examples, batch_size) if by_length else model.rank(examples,
                                                                                              batch_size=batch_size)
    no_rel = model.no_relation
    return [decide(r, no_rel, decision or resolved.run.decision) for r in rankings], rankings


def run_tags(resolved: ResolvedConfig, registry) -> dict[str, str]:
    run = resolved.run
    sampling = dict(run.data.sampling or {})
    model = resolved.components.get("model")
    tags = {"method": run.method or "(none)", "dataset": run.data.dataset_name, "model": model[0] if model else "",
            "seed": str(run.seed), "backbone": model[1].backbone if model else "",
            "sampling": str(sampling.get("kind", "none")),
            "split": f"train={run.data.train_split},dev={run.data.dev_split},test={run.data.test_split}"}
    for key in ("k", "ratio", "n", "seed"):
        if key in sampling:
            tags[f"sampling.{key}"] = str(sampling[key])
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
        if commit:
            tags["git_commit"] = commit
    except (OSError, subprocess.SubprocessError):
        pass
    for name, info in registry.plugins.items():
        tags[f"plugin.{name}"] = str(info.version)
    return tags


def check_same_run(folder: Path, resolved: ResolvedConfig) -> None:
    """Resuming ``folder`` needs the configuration that made it: a folder
    holding a checkpoint or a selected model from another configuration is
    refused, naming the settings that differ (never a silent resume that
    reports the old model under the new settings)."""
    import yaml

    from relforge.config import ConfigError, identity_differences, redact

    saved = folder / "config.yaml"
    resumable = any((folder / name).exists() for name in ("checkpoint", "best")) or any(
        folder.glob(STAGE_CHECKPOINTS))  # a run stopped during a stage resumes that stage
    if not saved.is_file() or not resumable:
        return
    try:
        old = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{saved}: unreadable ({type(exc).__name__}); it cannot be checked against this "
                          f"configuration: use another --output-dir") from None
    diffs = identity_differences(old, redact(resolved.data))
    if diffs:
        shown = "; ".join(diffs[:8]) + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else "")
        raise ConfigError(f"{folder} holds a run of another configuration ({shown}); resuming it would report "
                          f"that run under these settings. Use a new --output-dir, or move the folder aside "
                          f"and pass --no-resume (relforge bench: --rerun) to start afresh there")


def log_model_counts(run, model, phase: str, step: int) -> None:
    """What the model counted (``REModel.take_counts``) as ``model/<phase>/<name>``."""
    counts = model.take_counts()
    if counts:
        run.log_metrics({f"model/{phase}/{k}": v for k, v in counts.items()}, step)


def split_digest(examples: Sequence[Example]) -> str:
    """A short hash of a split's examples (ids, entity spans, labels)."""
    import hashlib

    h = hashlib.sha256()
    for ex in examples:
        h.update(f"{ex.id}|{ex.head.start}:{ex.head.end}|{ex.tail.start}:{ex.tail.end}|"
                 f"{','.join(sorted(ex.relations))}\n".encode())
    return h.hexdigest()[:12]


def plugin_versions(registry) -> dict[str, dict[str, str | None]]:
    """Plugin name -> its distribution and version, for a saved model's meta."""
    out = {}
    for name, info in registry.plugins.items():
        dist = info.source.removeprefix("entry point ").strip() if info.source.startswith("entry point") else None
        out[name] = {"distribution": dist, "version": info.version}
    return out


def run_pretraining(model, data, resolved: ResolvedConfig, registry, run, resume: bool = True,
                    superseded: bool = False, progress: bool = True):
    """The configured pretraining stages in order, each with a
    :class:`~relforge.components.StageContext`. Examples a stage adds (TKRE's
    synthetic data) join the training split, so later stages and fine-tuning
    see them; their count is printed and logged (``data/stage_added_examples``)."""
    from relforge.components import StageContext, StageResult

    stages = resolved.run.pretraining
    added_total = 0
    for i in range(len(stages)):
        comp_name, settings = resolved.components[f"pretraining.{i}"]
        stage = registry.create("pretraining_stage", comp_name, settings)
        print(f"pretraining stage {i + 1}/{len(stages)}: {comp_name}")
        context = StageContext(train_examples=data.splits["train"], seed=resolved.run.seed,
                               output_dir=run.output_dir / f"pretraining-{i}", run_dir=run.output_dir, run=run,
                               resolved=resolved, registry=registry, resume=resume,
                               superseded=resume and superseded, progress=progress)
        result = stage.run(model, context)
        if result is None:
            continue
        if not isinstance(result, StageResult):
            raise TypeError(f"pretraining stage {comp_name} returned {type(result).__name__}; a stage returns a "
                            f"StageResult (or None) -- see relforge.components.PretrainingStage")
        if result.model is not None:
            model = result.model
        if result.added_examples:
            data.splits["train"] = list(data.splits["train"]) + list(result.added_examples)
            added_total += len(result.added_examples)
            print(f"pretraining stage {comp_name}: added {len(result.added_examples)} training examples "
                  f"(train now {len(data.splits['train'])})")
    if stages:
        run.log_metrics({"data/stage_added_examples": added_total}, 0)
    return model


def train_run(resolved: ResolvedConfig, *, registry=None, data_dir: str | Path | None = None,
              output_dir: str | Path | None = None, resume: bool = True, tags: Mapping[str, str] | None = None,
              progress: bool = True) -> RunOutcome:
    """Train and evaluate one configuration. The run (and its tracking) starts
    first, so a failure anywhere (data, model, training) is recorded as a
    failed run with its error."""
    from accelerate.utils import set_seed

    from relforge.data.loading import load_data
    from relforge.engine.build import build_model, load_saved, model_class
    from relforge.engine.episodes import predict_episodes
    from relforge.engine.trainer import Trainer
    from relforge.registry import get_registry
    from relforge.run import Run

    registry = registry or get_registry()
    model_class(resolved, registry)  # no model configured: refused before the run starts
    if output_dir is not None and resume:
        check_same_run(Path(output_dir), resolved)
    run_cfg = resolved.run
    t0 = time.perf_counter()
    all_tags = {**run_tags(resolved, registry), **(tags or {})}
    if output_dir is not None:
        # trackers continue the run that recorded this folder (resume), or close it and link to it
        all_tags["relforge.attempt"] = "resume" if resume else "fresh"
    name = run_cfg.name or f"{run_cfg.method or 'run'}-{all_tags['dataset'].split('.')[-1]}-s{run_cfg.seed}"
    with Run(resolved, registry=registry, output_dir=output_dir, name=name, tags=all_tags) as run:
        set_seed(run_cfg.seed)
        data = load_data(run_cfg.data, registry, data_dir=data_dir)
        if "train" not in data.splits:
            raise ValueError("data.train_split is not set: `relforge train` needs training data")
        for note in data.notes:
            print(f"data: {note}")
        run.log_metrics({f"data/{role}_examples": len(exs) for role, exs in data.splits.items()}, 0)
        for role, exs in data.splits.items():
            run.log_dataset(run_cfg.data.dataset_name, role, split_digest(exs),
                            str(run_cfg.data.data_dir or run_cfg.data.dataset_name), len(exs))
        if run_cfg.decision.tune_on_dev and (not data.splits.get("dev") or data.episodes):
            raise ValueError("decision.tune_on_dev needs a dev split of single examples (not episodes) to tune on")
        label_words = {lab: data.verbalizer.words[lab] for lab in data.labels}
        model = build_model(resolved, labels=data.labels, label_words=label_words, no_relation=data.no_relation,
                            registry=registry, relation_templates=data.verbalizer.templates)
        select = run_cfg.train.select_metric
        if select == "auto":
            select = headline_metric(data.metric)
        train_settings = run_cfg.train.model_copy(update={"select_metric": select})
        from relforge.engine.checkpoint import find_checkpoint

        # the run's own checkpoint holds the stages' weights (a finished run's: best/ does): stages that only
        # train are not run again
        superseded = resume and find_checkpoint(run.output_dir / "checkpoint") is not None
        model = run_pretraining(model, data, resolved, registry, run, resume=resume, superseded=superseded,
                                progress=progress)
        # the saved model folder gets the run's configuration with secrets redacted, like config.yaml, and
        # the plugins it was made with (a folder loaded without one names the package to install)
        meta = {"config": run.config, "relforge_run_id": run.run_id, "plugins": plugin_versions(registry)}
        dev = data.splits.get("dev")
        batch_size = run_cfg.train.eval_batch_size

        def save_best(m, folder) -> None:
            from relforge.models.backbone import quiet_local_io

            with quiet_local_io():
                m.save(folder, meta)
            share_files(folder)

        def evaluate_dev(m) -> dict[str, float]:
            if "dev" in data.episodes:
                metrics = data.evaluate_episodes("dev", predict_episodes(m, data.episodes["dev"], batch_size,
                                                                         label="dev episodes"))
            else:
                preds, _ = predict_sets(m, dev, resolved, batch_size, label="dev")
                metrics = data.evaluate("dev", preds)
            if isinstance(m, ReportsDiagnostics):  # what the model saw while ranking dev
                metrics.update({k: v for k, v in m.eval_diagnostics().items() if k not in metrics})
            return metrics

        trainer = Trainer(model, model.features(data.splits["train"], training=True), model.collate,
                          train_settings, run.output_dir, seed=run_cfg.seed,
                          evaluate_fn=evaluate_dev if dev else None,
                          save_best_fn=save_best, run=run, progress=progress)
        result = trainer.train(resume=resume)
        drop_stage_checkpoints(run.output_dir)
        log_model_counts(run, model, "train", result.state.global_step)
        best_dir = result.best_dir
        dev_metrics = dict(result.last_metrics)
        if result.state.best_metric is not None:
            dev_metrics[f"best_{select}"] = result.state.best_metric
        test_metrics: dict[str, float] = {}
        logged: dict[str, float] = {}
        if best_dir is not None and ("test" in data.splits or run_cfg.decision.tune_on_dev):
            if trainer.step_losses and result.state.best_step in (None, result.state.global_step):
                # the model in memory is the selected one (saved by this process after its last step: the
                # best on dev, or the final model without dev): it is not loaded again
                best_model = model
            else:
                best_model, _, _ = load_saved(best_dir, registry=registry)
                best_model.to(next(model.parameters()).device)
            best_model.eval()
            with torch.no_grad():
                test_metrics, logged = score_selected(best_model, best_dir, data, resolved, select, batch_size,
                                                      run, result.state.global_step)
        if dev_metrics:
            run.log_metrics({f"final_dev/{k}": v for k, v in dev_metrics.items()}, result.state.global_step)
        if best_dir is not None:
            run.log_model(best_dir)
        outcome = RunOutcome(run.output_dir, best_dir, dev_metrics, test_metrics, dict(run.state.get("mlflow", {})),
                             time.perf_counter() - t0, logged)
        write_result(outcome)
    return outcome


def drop_stage_checkpoints(run_dir: Path) -> None:
    """Once fine-tuning has finished, the pretraining stages' checkpoints
    (``pretraining-<i>/<stage>/checkpoint``, a whole model each) are not
    needed to resume: the run's own checkpoint holds their result (a
    finished run's selected model in ``best/`` does)."""
    import shutil

    gone = [c for c in sorted(Path(run_dir).glob(STAGE_CHECKPOINTS)) if c.is_dir()]
    for folder in gone:
        shutil.rmtree(folder, ignore_errors=True)
    if gone:
        print(f"removed {len(gone)} pretraining-stage checkpoint(s): the run's own checkpoint (or its model in "
              f"best/) supersedes them")


def outcome_metrics(outcome: RunOutcome) -> dict[str, float]:
    """A run's final metrics under the names it logged them with."""
    return {**{f"test/{k}": v for k, v in outcome.test_metrics.items()},
            **{f"final_dev/{k}": v for k, v in outcome.dev_metrics.items()}, **outcome.logged}


def write_result(outcome: RunOutcome, **extra: Any) -> dict[str, float]:
    """The run folder's ``result.json``: its final metrics (what a suite
    reads back, and what a model card shows) and ``extra`` fields. Returns
    the metrics."""
    import json

    metrics = outcome_metrics(outcome)
    if outcome.output_dir is not None:
        Path(outcome.output_dir, "result.json").write_text(
            json.dumps({**extra, "metrics": metrics, "seconds": outcome.seconds}), encoding="utf-8")
    return metrics


def score_selected(best_model, best_dir: Path, data, resolved: ResolvedConfig, select: str, batch_size: int, run,
                   step: int) -> tuple[dict[str, float], dict[str, float]]:
    """The selected model on test (after tuning the threshold on dev when
    asked): metrics logged as ``test/*``, predictions, per-label table and
    confusion matrix written and logged. Returns (test metrics, other logged
    figures)."""
    from relforge.data.export import write_predictions_jsonl
    from relforge.engine.episodes import episode_mode, predict_episodes

    decision, logged = resolved.run.decision, {}
    if decision.tune_on_dev:
        decision, logged = tune_on_dev(best_model, best_dir, data, resolved, select, batch_size, run, step)
    test_metrics: dict[str, float] = {}
    if "test" in data.episodes:
        print(f"scoring {len(data.episodes['test'])} test episodes ({episode_mode(best_model)})")
        answers = predict_episodes(best_model, data.episodes["test"], batch_size, label="test episodes")
        test_metrics = data.evaluate_episodes("test", answers)
        run.log_metrics({f"test/{k}": v for k, v in test_metrics.items()}, step)
        run.log_artifact(write_episode_predictions(run.output_dir / "predictions-test-episodes.jsonl",
                                                   data.episodes["test"], answers), "predictions")
    elif "test" in data.splits:
        preds, rankings = predict_sets(best_model, data.splits["test"], resolved, batch_size, decision, label="test")
        test_metrics = data.evaluate("test", preds)
        run.log_metrics({f"test/{k}": v for k, v in test_metrics.items()}, step)
        pred_path = write_predictions_jsonl(
            run.output_dir / "predictions-test.jsonl", data.splits["test"], preds,
            scores=[{c.label: round(c.score, 5) for c in r[:5]} for r in rankings], no_relation=data.no_relation)
        run.log_artifact(pred_path, "predictions")
        for path in write_label_report(run.output_dir, data.splits["test"], preds, data.labels, data.no_relation):
            run.log_artifact(path, "reports")
    log_model_counts(run, best_model, "test", step)
    return test_metrics, logged


def tune_on_dev(model, best_dir: Path, data, resolved: ResolvedConfig, metric: str, batch_size: int, run, step: int):
    """``decision.tune_on_dev``: choose the threshold on dev with the selected
    model, log it (``dev/tuned_threshold``, ``dev/tuned_<metric>``), record it
    in the saved model's configuration (so ``relforge evaluate``/``predict``
    decide with it) and return the decision settings that test uses, with
    the metrics logged."""
    from relforge.engine.decision import tune_threshold
    from relforge.engine.models import read_meta, write_meta

    cfg = resolved.run.decision
    from relforge import progress

    with progress.task("dev (threshold)", total=len(data.splits["dev"])):  # train_run checked there is a dev split
        rankings = model.rank(data.splits["dev"], batch_size=batch_size)
    threshold, value, tried = tune_threshold(rankings, lambda preds: data.evaluate("dev", preds), metric,
                                             data.no_relation, cfg)
    untuned = tried[float(cfg.threshold)]
    print(f"decision: threshold {threshold:.4g} chosen on dev ({metric} {value:.4f}; "
          f"{cfg.threshold:g} gives {untuned:.4f}; {len(tried)} thresholds tried)")
    logged = {"dev/tuned_threshold": threshold, f"dev/tuned_{metric}": value, f"dev/untuned_{metric}": untuned}
    run.log_metrics(logged, step)
    meta = read_meta(best_dir)
    meta["config"].setdefault("decision", {})["dev_threshold"] = threshold
    write_meta(best_dir, meta)
    return cfg.model_copy(update={"dev_threshold": threshold}), logged


def write_episode_predictions(path: Path, episodes, answers) -> Path:
    """One JSON line per query: its episode, the episode's labels, gold and prediction."""
    import json

    with Path(path).open("w", encoding="utf-8") as fh:
        for i, (ep, preds) in enumerate(zip(episodes, answers)):
            for ex, pred in zip(ep.query, preds):
                fh.write(json.dumps({"episode": i, "labels": ep.labels, "id": ex.id, "gold": sorted(ex.relations),
                                     "prediction": pred}) + "\n")
    return Path(path)


def write_label_report(folder: Path, examples: Sequence[Example], predictions: Sequence[frozenset[str]],
                       labels: Sequence[str], no_relation: str | None) -> list[Path]:
    """A per-label precision/recall/F1 table (CSV) and a confusion-matrix
    figure (PNG). For pairs with several relations the matrix counts every
    (gold, predicted) combination; no relation is shown as its own label."""
    na = no_relation or "(none)"
    names = [na] + [lab for lab in labels if lab != no_relation]
    index = {lab: i for i, lab in enumerate(names)}
    counts = {lab: Counter() for lab in names}
    matrix = torch.zeros(len(names), len(names), dtype=torch.long)
    for ex, pred in zip(examples, predictions):
        gold = set(ex.relations)
        for lab in names[1:]:
            if lab in gold and lab in pred:
                counts[lab]["tp"] += 1
            elif lab in pred:
                counts[lab]["fp"] += 1
            elif lab in gold:
                counts[lab]["fn"] += 1
        for g in (gold or {na}):
            for p in (pred or {na}):
                matrix[index[g], index[p]] += 1
    table = folder / "per-label-test.csv"
    with table.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["label", "support", "precision", "recall", "f1", "tp", "fp", "fn"])
        for lab in names[1:]:
            c = counts[lab]
            p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
            r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
            f = 2 * p * r / (p + r) if p + r else 0.0
            w.writerow([lab, c["tp"] + c["fn"], f"{p:.4f}", f"{r:.4f}", f"{f:.4f}", c["tp"], c["fp"], c["fn"]])
    figure = folder / "confusion-test.png"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.35 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix.numpy(), cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    if len(names) <= 25:
        for i in range(len(names)):
            for j in range(len(names)):
                if matrix[i, j]:
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=6)
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    plt.close(fig)
    return [table, figure]
