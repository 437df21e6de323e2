"""Pretraining stages in the engine's loop (relforge.engine.stage_training): resumable, logged under the
stage's name, skipped when finished."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from relforge.components import StageContext
from relforge.engine.stage_training import epochs_for_steps, stage_train_config, train_stage
from tests.engine.tiny import TinyRegressor, collate, make_data


class Recorder:
    def __init__(self):
        self.metrics = {}

    def log_metrics(self, metrics, step):
        for k, v in metrics.items():
            self.metrics.setdefault(k, []).append((step, v))

    def set_tags(self, tags):
        pass


class Crashing(TinyRegressor):
    """Raises at the given forward call (an interrupted stage)."""

    def __init__(self, crash_at=None):
        super().__init__()
        self.calls, self.crash_at = 0, crash_at

    def forward(self, batch):
        self.calls += 1
        if self.crash_at is not None and self.calls == self.crash_at:
            raise KeyboardInterrupt
        return super().forward(batch)


SETTINGS = {"max_steps": 8, "epochs": epochs_for_steps(8, 64, 16), "batch_size": 16, "learning_rate": 1e-2,
            "log_every": 3, "weight_decay": 0.0, "max_grad_norm": 1.0}


def ctx(folder: Path, run=None, resume=True) -> StageContext:
    return StageContext(train_examples=[], seed=7, output_dir=folder, run_dir=folder, run=run, resume=resume)


def weights(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_a_stage_logs_under_its_name_and_an_interrupted_one_resumes_to_the_same_weights(tmp_path):
    run = Recorder()
    whole = Crashing()
    _, trainer = train_stage(whole, make_data(), collate, context=ctx(tmp_path / "a", run), name="pretraining/toy",
                             settings=SETTINGS)
    assert len(trainer.step_losses) == 8 and (tmp_path / "a" / "toy" / "checkpoint").is_dir()
    # every third step and the last partial window, under the stage's name; no train/* metric
    assert [s for s, _ in run.metrics["pretraining/toy/loss"]] == [3, 6, 8]
    assert "pretraining/toy/lr" in run.metrics and not any(k.startswith("train/") for k in run.metrics)
    # interrupted in the second epoch (after the epoch-1 checkpoint), then resumed from it
    broken = Crashing(crash_at=6)
    with pytest.raises(KeyboardInterrupt):
        train_stage(broken, make_data(), collate, context=ctx(tmp_path / "b"), name="pretraining/toy",
                    settings=SETTINGS)
    resumed = Crashing()
    _, again = train_stage(resumed, make_data(), collate, context=ctx(tmp_path / "b"), name="pretraining/toy",
                           settings=SETTINGS)
    assert len(again.step_losses) == 4  # steps 5-8 only
    for k, v in weights(whole).items():
        assert torch.allclose(v, resumed.state_dict()[k], atol=1e-6), k


def test_a_finished_stage_is_not_run_again_unless_resume_is_off(tmp_path, capsys):
    first = Crashing()
    train_stage(first, make_data(), collate, context=ctx(tmp_path), name="warmup", settings=SETTINGS)
    fresh = Crashing()
    _, trainer = train_stage(fresh, make_data(), collate, context=ctx(tmp_path), name="warmup", settings=SETTINGS)
    assert trainer.step_losses == [] and fresh.calls == 0
    assert "finished earlier" in capsys.readouterr().out
    for k, v in weights(first).items():
        assert torch.equal(v, fresh.state_dict()[k])  # the stage's result, loaded from its checkpoint
    redo = Crashing()
    _, trainer = train_stage(redo, make_data(), collate, context=ctx(tmp_path, resume=False), name="warmup",
                             settings=SETTINGS)
    assert len(trainer.step_losses) == 8


def test_stage_settings_are_constant_rate_and_refuse_bad_values(tmp_path):
    cfg = stage_train_config(ctx(tmp_path), **SETTINGS)
    assert cfg.lr_schedule == "constant" and cfg.warmup_ratio == 0 and cfg.max_steps == 8
    with pytest.raises(ValueError, match="batch_size"):
        stage_train_config(ctx(tmp_path), batch_size=0)
    with pytest.raises(ValueError, match="nothing to train on"):
        train_stage(Crashing(), [], collate, context=ctx(tmp_path), name="warmup", settings=SETTINGS)
    assert epochs_for_steps(20, 363, 16) == 1.0 and epochs_for_steps(30, 363, 16) == 2.0


def test_a_superseded_stage_is_skipped_and_finished_runs_drop_stage_checkpoints(tmp_path, capsys):
    """A run resuming from its own fine-tuning checkpoint does not train its stages again; once fine-tuning
    has finished, the stages' checkpoints (a whole model each) are removed."""
    from relforge.engine.pipeline import drop_stage_checkpoints

    module = Crashing()
    before = weights(module)
    skipped = StageContext(train_examples=[], seed=7, output_dir=tmp_path / "pretraining-0", run_dir=tmp_path,
                           resume=True, superseded=True)
    assert train_stage(module, make_data(), collate, context=skipped, name="warmup", settings=SETTINGS) == (None, None)
    assert module.calls == 0 and all(torch.equal(v, module.state_dict()[k]) for k, v in before.items())
    assert "not trained again" in capsys.readouterr().out
    train_stage(Crashing(), make_data(), collate, context=ctx(tmp_path / "pretraining-0"), name="warmup",
                settings=SETTINGS)
    (tmp_path / "checkpoint").mkdir()  # the run's own checkpoint is not touched
    assert (tmp_path / "pretraining-0" / "warmup" / "checkpoint").is_dir()
    drop_stage_checkpoints(tmp_path)
    assert not (tmp_path / "pretraining-0" / "warmup" / "checkpoint").exists() and (tmp_path / "checkpoint").is_dir()
    assert "removed 1 pretraining-stage checkpoint" in capsys.readouterr().out


def test_a_stage_run_by_hand_leaves_no_checkpoint_and_a_nan_names_the_stage(tmp_path, monkeypatch):
    from relforge.engine.trainer import NonFiniteLossError

    monkeypatch.chdir(tmp_path)
    by_hand = StageContext(train_examples=[], seed=7)  # no run folder: resume off, checkpoint in a temporary folder
    _, trainer = train_stage(Crashing(), make_data(), collate, context=by_hand, name="warmup", settings=SETTINGS)
    assert len(trainer.step_losses) == 8 and list(tmp_path.iterdir()) == []

    class Diverges(TinyRegressor):
        def forward(self, batch):
            out = super().forward(batch)
            out.loss = out.loss * float("nan")
            return out

    with pytest.raises(NonFiniteLossError, match=r"^pretraining/toy: the training loss became nan at step 0"):
        train_stage(Diverges(), make_data(), collate, context=by_hand, name="pretraining/toy", settings=SETTINGS)


def test_a_run_stopped_during_a_stage_is_checked_against_the_new_configuration(tmp_path):
    """Resuming a folder whose only checkpoint is a stage's (stopped before fine-tuning saved one) is refused
    under another configuration, as a folder with the run's own checkpoint is."""
    import yaml

    from relforge.config import ConfigError, load_config, redact
    from relforge.engine.pipeline import check_same_run

    old = load_config([], ["method=etrag", "data.dataset=quickstart", "pretraining.0.learning_rate=1e-4"])
    new = load_config([], ["method=etrag", "data.dataset=quickstart", "pretraining.0.learning_rate=5e-4"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(redact(old.data)))
    check_same_run(tmp_path, new)  # nothing to resume yet: no check
    (tmp_path / "pretraining-0" / "warmup" / "checkpoint").mkdir(parents=True)
    with pytest.raises(ConfigError, match="another configuration"):
        check_same_run(tmp_path, new)
    check_same_run(tmp_path, old)
