"""The Accelerate training loop: learning, resume, non-finite loss, selection."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from relforge.config import TrainConfig
from relforge.engine.trainer import NonFiniteLossError, Trainer

from tests.engine.tiny import TinyRegressor, collate, dev_loss, make_data


def settings(**kw):
    base = dict(epochs=3, batch_size=8, learning_rate=0.05, log_every=2, eval_every="epoch",
                select_metric="mse", select_mode="min")
    base.update(kw)
    return TrainConfig(**base)


def test_loss_falls_and_best_is_selected(tmp_path):
    model = TinyRegressor()
    before = dev_loss(model)["mse"]
    saved = []
    trainer = Trainer(model, make_data(), collate, settings(), tmp_path, evaluate_fn=dev_loss, progress=False,
                      save_best_fn=lambda m, d: (saved.append(d.name), torch.save(m.state_dict(), d / "w.pt")))
    result = trainer.train()
    assert result.state.global_step == 24 and result.state.epoch == 3
    assert result.last_metrics["mse"] < before / 2
    assert result.state.best_metric == min(h["mse"] for h in result.state.history)
    assert (tmp_path / "best" / "w.pt").exists()
    # the model is kept in best/: the finished checkpoint is the loop's state alone
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == ["trainer_state.json"]
    state = json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())
    assert state["finished"] and state["global_step"] == 24


def _counting_saves(trainer):
    saves = []
    real = trainer.accelerator.save_state

    def save_state(*args, **kwargs):
        saves.append(trainer.state.global_step)
        return real(*args, **kwargs)

    trainer.accelerator.save_state = save_state
    return saves


@pytest.mark.parametrize("save_every, full_saves", [("epoch", [8, 16, 24]), (5, [5, 10, 15, 20, 24])])
def test_the_finished_state_does_not_write_the_weights_twice(tmp_path, save_every, full_saves):
    """The last epoch's checkpoint already holds the final weights and optimizer: finishing writes
    only the loop's state into it; a run whose last save was earlier saves everything at the end."""
    trainer = Trainer(TinyRegressor(), make_data(), collate, settings(save_every=save_every), tmp_path,
                      evaluate_fn=dev_loss, progress=False)
    saves = _counting_saves(trainer)
    result = trainer.train()
    assert saves == full_saves
    state = json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())
    assert state["finished"] and state["global_step"] == 24 and state["best_metric"] == result.state.best_metric
    final = {k: v for k, v in trainer.accelerator.unwrap_model(trainer.model).state_dict().items()}
    saved = load_file(str(tmp_path / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(final[k], saved[k]) for k in final)
    again = Trainer(TinyRegressor(), make_data(), collate, settings(save_every=save_every), tmp_path,
                    evaluate_fn=dev_loss, progress=False)
    resumed = again.train()
    assert resumed.state.finished and resumed.state.global_step == 24 and not again.step_losses
    assert resumed.state.best_metric == result.state.best_metric


def _save_weights(m, d):
    torch.save(m.state_dict(), d / "w.pt")


@pytest.mark.parametrize("save_every, full_saves", [("epoch", [8, 16]), (5, [5, 10, 15, 20])])
def test_a_run_that_keeps_its_model_in_best_does_not_save_its_last_weights_into_the_checkpoint(
        tmp_path, save_every, full_saves):
    """With a best/ model (save_best_fn), nothing reads a finished checkpoint's weights again: the save
    at the end of the last epoch is not made, and finishing swaps in the loop's state alone (the earlier
    checkpoint's weights and optimizer go with it). A resumed finished run returns best/."""
    cfg = settings(save_every=save_every)
    trainer = Trainer(TinyRegressor(), make_data(), collate, cfg, tmp_path, evaluate_fn=dev_loss, progress=False,
                      save_best_fn=_save_weights)
    saves = _counting_saves(trainer)
    result = trainer.train()
    assert saves == full_saves
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == ["trainer_state.json"]
    assert result.best_dir == tmp_path / "best" and (tmp_path / "best" / "w.pt").exists()
    again = Trainer(TinyRegressor(), make_data(), collate, cfg, tmp_path, evaluate_fn=dev_loss, progress=False,
                    save_best_fn=_save_weights)
    resumed = again.train()
    assert resumed.state.finished and resumed.state.global_step == 24 and not again.step_losses
    assert resumed.best_dir == tmp_path / "best" and resumed.state.best_metric == result.state.best_metric


def test_a_finished_run_whose_best_model_is_missing_is_refused_with_the_way_out(tmp_path):
    import shutil

    from relforge.validation import InputError

    Trainer(TinyRegressor(), make_data(), collate, settings(), tmp_path, evaluate_fn=dev_loss, progress=False,
            save_best_fn=_save_weights).train()
    shutil.rmtree(tmp_path / "best")
    again = Trainer(TinyRegressor(), make_data(), collate, settings(), tmp_path, evaluate_fn=dev_loss,
                    progress=False, save_best_fn=_save_weights)
    with pytest.raises(InputError, match=r"checkpoint: the run has finished and kept its model in .*best, which "
                                         r"is missing; train it again with --no-resume"):
        again.train()


def test_without_dev_evaluation_the_final_model_is_kept_before_the_run_is_marked_finished(tmp_path):
    """best/ then holds the final weights, and is written before the finished state (a resumed finished run
    reads best/); a best/ that an earlier attempt left in the folder is replaced."""
    (tmp_path / "best").mkdir()
    torch.save({"stale": torch.zeros(1)}, tmp_path / "best" / "w.pt")
    order = []
    trainer = Trainer(TinyRegressor(), make_data(), collate, settings(), tmp_path, progress=False,
                      save_best_fn=lambda m, d: (order.append("best"), _save_weights(m, d)))
    finished = trainer._save_finished_state

    def save_finished():
        order.append("finished")
        finished()

    trainer._save_finished_state = save_finished
    result = trainer.train()
    assert order == ["best", "finished"] and result.best_dir == tmp_path / "best"
    saved = torch.load(tmp_path / "best" / "w.pt")
    final = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    assert saved.keys() == final.keys() and all(torch.equal(saved[k], final[k]) for k in final)


def test_eval_every_end_evaluates_dev_once_on_the_final_model(tmp_path):
    calls = []

    def counted(model):
        calls.append(1)
        return dev_loss(model)

    trainer = Trainer(TinyRegressor(), make_data(), collate, settings(eval_every="end"), tmp_path,
                      evaluate_fn=counted, progress=False, save_best_fn=_save_weights)
    result = trainer.train()
    assert len(calls) == 1 and [h["step"] for h in result.state.history] == [24] and result.state.best_step == 24
    saved = torch.load(tmp_path / "best" / "w.pt")
    final = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    assert all(torch.equal(saved[k], final[k]) for k in final)
    with pytest.raises(ValueError, match="early_stopping_patience counts dev evaluations"):
        settings(eval_every="end", early_stopping_patience=2)


class Interrupt(Exception):
    pass


def test_a_fresh_start_removes_the_earlier_attempts_checkpoint_before_training(tmp_path):
    """resume=False (--no-resume): a crash before the new attempt's first save must not resume, or find
    finished, the earlier attempt's run."""
    Trainer(TinyRegressor(), make_data(), collate, settings(), tmp_path, evaluate_fn=dev_loss, progress=False,
            save_best_fn=_save_weights).train()
    assert json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())["finished"]

    def crash(state):
        if state.global_step == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        Trainer(TinyRegressor(), make_data(), collate, settings(), tmp_path, evaluate_fn=dev_loss, progress=False,
                save_best_fn=_save_weights, step_callback=crash).train(resume=False)
    assert not (tmp_path / "checkpoint").exists() and not (tmp_path / "best").exists()
    again = Trainer(TinyRegressor(), make_data(), collate, settings(), tmp_path, evaluate_fn=dev_loss,
                    progress=False, save_best_fn=_save_weights)
    result = again.train()
    assert len(again.step_losses) == 24 and result.state.finished


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    cfg = settings(save_every=5, eval_every=7)
    full = Trainer(TinyRegressor(), make_data(), collate, cfg, tmp_path / "a", evaluate_fn=dev_loss,
                   progress=False)
    full.train()

    def stop_at_13(state):
        if state.global_step == 13:
            raise Interrupt

    first = Trainer(TinyRegressor(), make_data(), collate, cfg, tmp_path / "b", evaluate_fn=dev_loss,
                    progress=False, step_callback=stop_at_13)
    with pytest.raises(Interrupt):
        first.train()
    saved = json.loads((tmp_path / "b" / "checkpoint" / "trainer_state.json").read_text())
    assert saved["global_step"] == 10 and saved["batches_in_epoch"] == 2  # 8 batches per epoch
    second = Trainer(TinyRegressor(), make_data(), collate, cfg, tmp_path / "b", evaluate_fn=dev_loss,
                     progress=False)
    result = second.train()
    assert result.state.global_step == 24
    a = load_file(tmp_path / "a" / "checkpoint" / "model.safetensors")
    b = load_file(tmp_path / "b" / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert [h["mse"] for h in full.state.history] == [h["mse"] for h in result.state.history]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    class Exploding(TinyRegressor):
        def forward(self, batch):
            out = super().forward(batch)
            if self.training and self.calls == 11:
                out.loss = out.loss * float("nan")
            self.calls += 1
            return out

    model = Exploding()
    model.calls = 0
    trainer = Trainer(model, make_data(), collate, settings(save_every=4), tmp_path, progress=False)
    with pytest.raises(NonFiniteLossError, match=r"became nan at step 11 .*last good checkpoint is .*checkpoint"):
        trainer.train()
    state = json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    weights = load_file(tmp_path / "checkpoint" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_early_stopping_and_group_learning_rates(tmp_path):
    calls = []

    def flat_metric(model):
        calls.append(1)
        return {"mse": 1.0}  # never improves after the first evaluation

    trainer = Trainer(TinyRegressor(), make_data(), collate,
                      settings(epochs=10, early_stopping_patience=2, group_learning_rates={"head": 0.5}),
                      tmp_path, evaluate_fn=flat_metric, progress=False)
    lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs == {"body": 0.05, "head": 0.5}
    result = trainer.train()
    assert result.stopped_early and len(calls) == 3 and result.state.epoch == 3
    with pytest.raises(ValueError, match="unknown parameter groups"):
        Trainer(TinyRegressor(), make_data(), collate, settings(group_learning_rates={"retriever": 1.0}),
                tmp_path / "x", progress=False)


def test_gradient_accumulation_counts_optimizer_steps(tmp_path):
    trainer = Trainer(TinyRegressor(), make_data(), collate, settings(epochs=1, gradient_accumulation_steps=4),
                      tmp_path, progress=False)
    assert trainer.train().state.global_step == 2


def test_two_process_cpu_training_completes(tmp_path):
    """Two processes on CPU (gloo). Accelerate 1.x's `launch --cpu --num_processes 2`
    starts a single process unless an MPI hostfile is given; its torchrun-based
    launcher (`--multi_gpu`) starts two, and the Trainer's Accelerator(cpu=True)
    joins them as MULTI_CPU."""
    script = Path(__file__).with_name("two_process_job.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    res = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--multi_gpu",
                          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                          str(script), str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["num_processes"] == 2
    assert report["global_step"] == 8  # 64 examples / (8 per process x 2 processes) x 2 epochs
    assert report["final_mse"] < report["initial_mse"]


@pytest.mark.parametrize("damaged", ["model.safetensors", "trainer_state.json"])
def test_a_damaged_checkpoint_is_named_with_the_way_out(tmp_path, damaged):
    from relforge.validation import InputError

    trainer = Trainer(TinyRegressor(), make_data(), collate, settings(epochs=1, save_every=4), tmp_path,
                      progress=False)
    trainer.train()
    path = tmp_path / "checkpoint" / damaged
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated, as a full disk leaves it
    again = Trainer(TinyRegressor(), make_data(), collate, settings(epochs=1, save_every=4), tmp_path,
                    progress=False)
    with pytest.raises(InputError, match=r"checkpoint is damaged .*--no-resume"):
        again.train()
    assert again.train(resume=False).state.global_step == 8  # --no-resume starts afresh


def test_random_states_that_cannot_be_loaded_are_said(tmp_path, capsys):
    trainer = Trainer(TinyRegressor(), make_data(), collate, settings(epochs=1, save_every=4), tmp_path,
                      progress=False)
    trainer.train()
    (tmp_path / "checkpoint" / "random_states_0.pkl").write_bytes(b"not a pickle")
    again = Trainer(TinyRegressor(), make_data(), collate, settings(epochs=2, save_every=4), tmp_path,
                    progress=False)
    again.load_checkpoint()
    assert again.random_states_restored is False
    assert "random_states_0.pkl could not be loaded" in capsys.readouterr().out


def test_detach_links_gives_linked_files_their_own_copy(tmp_path):
    """After it, a writer that rewrites a file in place (torch.save does) cannot change the other name."""
    from relforge.engine.checkpoint import detach_links

    folder = tmp_path / "best"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"old weights")
    (folder / "plain.json").write_text("{}")
    os.link(folder / "w.bin", tmp_path / "logged.bin")
    assert detach_links(folder) == 1 and detach_links(folder) == 0
    with open(folder / "w.bin", "r+b") as f:  # in place, same inode
        f.write(b"new")
    assert (tmp_path / "logged.bin").read_bytes() == b"old weights"
    assert (folder / "w.bin").read_bytes() == b"new weights"
    assert sorted(p.name for p in folder.iterdir()) == ["plain.json", "w.bin"]


def test_a_best_model_gone_before_the_end_is_replaced_by_the_final_one_and_said(tmp_path, capsys):
    import shutil

    def remove_best(state):
        if state.global_step == 20:
            shutil.rmtree(tmp_path / "best")

    trainer = Trainer(TinyRegressor(), make_data(), collate, settings(), tmp_path, progress=False,
                      evaluate_fn=lambda m: {"mse": 1.0}, save_best_fn=_save_weights, step_callback=remove_best)
    result = trainer.train()
    assert "best (the model selected on dev at step 8) is missing: the final model (step 24)" in capsys.readouterr().out
    assert result.state.best_step == 24 and result.state.best_metric == 1.0 and (tmp_path / "best" / "w.pt").exists()
