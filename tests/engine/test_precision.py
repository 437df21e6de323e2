"""train.mixed_precision: what each mode trains in on which machine, CPU bf16 autocast in the
training step (and only there), what the run is told and records."""
from __future__ import annotations

import pytest
import torch

from relforge.config import ConfigError, TrainConfig, load_config
from relforge.engine import precision
from relforge.engine.trainer import Trainer, _accelerator

from tests.engine.tiny import TinyRegressor, collate, dev_loss, make_data


@pytest.mark.parametrize("requested, machine, expected, says", [
    ("no", dict(cuda=False, cpu_native=True), "no", None),
    ("auto", dict(cuda=False, cpu_native=True), "bf16", "bf16 autocast"),
    ("auto", dict(cuda=False, cpu_native=False), "no", None),
    ("bf16", dict(cuda=False, cpu_native=True), "bf16", None),
    ("bf16", dict(cuda=False, cpu_native=False), "bf16", "emulated"),
    ("fp16", dict(cuda=False, cpu_native=True), "no", "GPU mode"),
    ("auto", dict(cuda=True, cuda_bf16=True), "bf16", None),
    ("auto", dict(cuda=True, cuda_bf16=False), "no", "no bf16"),
    ("fp16", dict(cuda=True, cuda_bf16=True), "fp16", None),
    ("bf16", dict(cuda=True, cuda_bf16=True), "bf16", None),
])
def test_resolve(requested, machine, expected, says):
    mode, note = precision.resolve(requested, **machine)
    assert mode == expected
    assert (note is None) if says is None else (says in note)


def test_unknown_mode_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="mixed_precision"):
        load_config([], ["method=generative_ce", "train.mixed_precision=bf61"])
    with pytest.raises(ValueError, match="bf61"):
        precision.resolve("bf61", cuda=False, cpu_native=True)


class Recorder(TinyRegressor):
    """Records, at each forward (training and evaluation apart), whether CPU autocast was on and
    the dtype its layers computed in; returns the loss in that dtype, as a loss computed under
    autocast may be (bf16), for the loop to make it float32."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[bool, torch.dtype]] = []
        self.seen_eval: list[tuple[bool, torch.dtype]] = []

    def forward(self, batch):
        out = super().forward(batch)
        dtype = self.head(self.body(batch["x"])).dtype
        (self.seen if self.training else self.seen_eval).append((torch.is_autocast_enabled("cpu"), dtype))
        out.loss = out.loss.to(dtype)
        return out


class FakeRun:
    def __init__(self):
        self.tags = {}

    def set_tags(self, tags):
        self.tags.update(tags)

    def log_metrics(self, metrics, step=None):
        pass


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path")
@pytest.mark.parametrize("mode, autocast", [("no", False), ("bf16", True)])
def test_cpu_training_steps_run_under_bf16_autocast_only_when_asked(tmp_path, mode, autocast, capsys):
    model, run = Recorder(), FakeRun()
    cfg = TrainConfig(epochs=1, batch_size=16, learning_rate=0.05, mixed_precision=mode, select_metric="mse",
                      select_mode="min")
    trainer = Trainer(model, make_data(), collate, cfg, tmp_path, evaluate_fn=dev_loss, progress=False, run=run)
    result = trainer.train()
    assert model.seen and all(s == (autocast, torch.bfloat16 if autocast else torch.float32) for s in model.seen)
    # evaluation (dev_loss, called by the loop) ran outside autocast, in float32
    assert model.seen_eval and all(s == (False, torch.float32) for s in model.seen_eval)
    assert run.tags["precision"] == mode
    assert trainer.precision == mode
    # training still learned, with the bf16 loss made float32 for the backward pass and the checks
    assert result.last_metrics["mse"] < dev_loss(TinyRegressor())["mse"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path")
def test_a_cpu_without_bf16_instructions_is_told_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: False)
    monkeypatch.setattr("relforge.engine.trainer._SAID", set())
    cfg = TrainConfig(epochs=1, batch_size=32, mixed_precision="bf16")
    for sub in ("a", "b"):
        Trainer(TinyRegressor(), make_data(), collate, cfg, tmp_path / sub, progress=False)
    assert capsys.readouterr().out.count("emulated") == 1
    cfg = TrainConfig(epochs=1, batch_size=32, mixed_precision="fp16")
    run = FakeRun()
    trainer = Trainer(TinyRegressor(), make_data(), collate, cfg, tmp_path / "c", progress=False, run=run)
    assert "GPU mode" in capsys.readouterr().out
    assert trainer.precision == "no" and run.tags["precision"] == "no"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path")
def test_accelerators_of_different_precisions_follow_one_another_in_one_process():
    """A suite's cells run in one process; Accelerate keeps the precision process-wide and refused
    a second one before the trainer reset it."""
    first = _accelerator("bf16", 1, cpu=True)
    assert first.mixed_precision == "bf16"
    second = _accelerator("no", 1, cpu=True)
    assert second.mixed_precision == "no"


def test_similarities_stay_float32_inside_a_bf16_step():
    """Autocast runs every matrix product in bf16 whatever its inputs; the retrievers' cosine
    similarities, their soft neighbours and TKRE's InfoNCE are computed in float32 inside it."""
    from relforge.retrieval import gather_neighbours, mean_cosine_similarity
    from relforge_tkre.objectives import span_infonce

    g = torch.Generator().manual_seed(0)
    q, m = torch.randn(4, 3, 64, generator=g), torch.randn(50, 3, 64, generator=g)
    w = torch.softmax(torch.randn(4, 2, 50, generator=g), -1)
    a, p, n = torch.randn(4, 64, generator=g), torch.randn(4, 2, 64, generator=g), torch.randn(4, 5, 64, generator=g)
    pm, nm = torch.ones(4, 2, dtype=torch.bool), torch.ones(4, 5, dtype=torch.bool)
    full = (mean_cosine_similarity(q, m), gather_neighbours(w, m, soft=True), span_infonce(a, p, pm, n, nm, 0.1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = (mean_cosine_similarity(q, m), gather_neighbours(w, m, soft=True), span_infonce(a, p, pm, n, nm, 0.1))
        plain_bf16 = q.reshape(4, -1) @ m.reshape(50, -1).T  # what autocast does to a bare product
    assert plain_bf16.dtype == torch.bfloat16
    for f, i in zip(full, inside):
        assert i.dtype == torch.float32
        torch.testing.assert_close(i, f, rtol=1e-5, atol=1e-5)
