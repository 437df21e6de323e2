"""A tiny model and data set for engine tests (also run by accelerate launch)."""
from __future__ import annotations

import torch

from relforge.components import HasParameterGroups, ModelOutput


class TinyRegressor(torch.nn.Module, HasParameterGroups):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1))
        self.head = torch.nn.Linear(16, 1)

    def parameter_groups(self):
        return {"body": list(self.body.parameters()), "head": list(self.head.parameters())}

    def forward(self, batch):
        pred = self.head(self.body(batch["x"])).squeeze(-1)
        return ModelOutput(logits=pred, loss=torch.nn.functional.mse_loss(pred, batch["y"]) * batch.get("scale", 1.0))


def make_data(n: int = 64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    return [{"x": x[i], "y": y[i]} for i in range(n)]


def collate(items):
    return {"x": torch.stack([i["x"] for i in items]), "y": torch.stack([i["y"] for i in items])}


def dev_loss(model, data=None):
    data = data or make_data(32)
    batch = collate(data)
    model.eval()
    with torch.no_grad():
        return {"mse": float(model(batch).loss)}
