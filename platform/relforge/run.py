"""A run and its lifecycle events, which trackers receive through hooks."""
from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from relforge.config import ResolvedConfig, redact


class Run:
    """Context manager around one run.

    On enter it creates ``output_dir``, saves the resolved configuration (with
    secrets redacted) as ``config.yaml`` and calls the ``on_run_start`` hook;
    on exit it calls ``on_run_end`` with ``FINISHED``, ``FAILED`` or
    ``KILLED``. ``log_metrics`` and ``log_artifact`` call their hooks.
    """

    def __init__(self, config: ResolvedConfig | Mapping[str, Any], *, registry=None,
                 output_dir: str | Path | None = None, name: str | None = None,
                 tags: Mapping[str, str] | None = None) -> None:
        from relforge.registry import get_registry

        self.registry = registry or get_registry()
        data = config.data if isinstance(config, ResolvedConfig) else dict(config)
        self.config: dict[str, Any] = redact(data)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.run_id = f"{stamp}-{uuid.uuid4().hex[:8]}"
        self.name = name or data.get("name") or data.get("method") or "run"
        base = Path(output_dir) if output_dir is not None else Path(data.get("output_dir", "runs")) / \
            f"{self.name}-{self.run_id}"
        self.output_dir = base
        self.tags: dict[str, str] = {str(k): str(v) for k, v in (tags or {}).items()}
        self.state: dict[str, Any] = {}
        self.status: str | None = None

    def __enter__(self) -> Run:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "config.yaml").write_text(
            yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True), encoding="utf-8")
        self.registry.hook.on_run_start(run=self)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.status = "FINISHED"
        elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
            # interrupted: Ctrl-C, or a scheduler's preemption / time-out signal (submitit exits the job)
            self.status = "KILLED"
        else:
            self.status = "FAILED"
        self.registry.hook.on_run_end(run=self, status=self.status, error=exc)
        return False

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.registry.hook.on_metrics(run=self, metrics={k: float(v) for k, v in metrics.items()}, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Record ``tags`` on the run in every tracker (values become strings)."""
        tags = {str(k): str(v) for k, v in tags.items()}
        self.tags.update(tags)
        self.registry.hook.on_tags(run=self, tags=tags)

    def log_dataset(self, name: str, split: str, digest: str, source: str, examples: int) -> None:
        """Record a data split the run read (trackers show it as an input)."""
        self.registry.hook.on_dataset(run=self, name=name, split=split, digest=digest, source=source,
                                      examples=int(examples))

    def log_model(self, folder: str | Path) -> None:
        """Hand the run's final model folder to every tracker (``on_model``)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"model folder {folder} does not exist")
        self.registry.hook.on_model(run=self, folder=folder)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"artifact {path} does not exist")
        self.registry.hook.on_artifact(run=self, path=path, artifact_path=artifact_path)
