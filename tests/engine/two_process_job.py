"""Run by test_trainer under `accelerate launch --num_processes 2 --cpu`."""
import json
import sys
from pathlib import Path

from relforge.config import TrainConfig
from relforge.engine.trainer import Trainer
from tests.engine.tiny import TinyRegressor, collate, dev_loss, make_data

out = Path(sys.argv[1])
model = TinyRegressor()
initial = dev_loss(model)["mse"]
trainer = Trainer(model, make_data(), collate,
                  TrainConfig(epochs=2, batch_size=8, learning_rate=0.01, select_metric="mse", select_mode="min"),
                  out, evaluate_fn=dev_loss, progress=False)
result = trainer.train()
if trainer.accelerator.is_main_process:
    (out / "report.json").write_text(json.dumps({
        "num_processes": trainer.accelerator.num_processes, "global_step": result.state.global_step,
        "initial_mse": initial, "final_mse": result.last_metrics["mse"]}))
