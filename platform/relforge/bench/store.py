"""Finding a suite's earlier runs in MLflow (resume across invocations and machines)."""
from __future__ import annotations

from typing import Any


def client_for(tracking: dict[str, Any]):
    """An MlflowClient for a config's ``tracking`` section, or None when MLflow is off."""
    if "mlflow" not in tracking.get("trackers", ["mlflow"]):
        return None
    from mlflow.tracking import MlflowClient

    from relforge.tracking.mlflow_tracker import tracking_uri_for

    return MlflowClient(tracking_uri=tracking_uri_for({"tracking": tracking}))


def uri_for(tracking: dict[str, Any]) -> str:
    """The store a suite's ``tracking`` section logs to."""
    from relforge.tracking.mlflow_tracker import tracking_uri_for

    return tracking_uri_for({"tracking": tracking})


def _experiment_id(client, tracking: dict[str, Any]) -> str | None:
    exp = client.get_experiment_by_name(tracking.get("experiment", "relforge"))
    return exp.experiment_id if exp is not None else None


def _q(value: str) -> str:
    return value.replace("'", "\\'")


def search(client, tracking: dict[str, Any], filters: list[str]) -> list:
    exp = _experiment_id(client, tracking)
    if exp is None:
        return []
    return client.search_runs([exp], filter_string=" and ".join(filters), order_by=["attributes.start_time DESC"],
                              max_results=5000)


def finished_cells(client, tracking: dict[str, Any], suite: str) -> dict[str, Any]:
    """config hash -> the newest FINISHED cell run of ``suite``."""
    runs = search(client, tracking, [f"tags.`relforge.suite` = '{_q(suite)}'", "tags.`relforge.role` = 'cell'",
                                     "attributes.status = 'FINISHED'"])
    out: dict[str, Any] = {}
    for r in runs:
        out.setdefault(r.data.tags.get("relforge.config_hash", ""), r)
    return out


def find_parent(client, tracking: dict[str, Any], suite: str, shard: str) -> str | None:
    runs = search(client, tracking, [f"tags.`relforge.suite` = '{_q(suite)}'", "tags.`relforge.role` = 'suite'",
                                     f"tags.`relforge.shard` = '{_q(shard)}'"])
    return runs[0].info.run_id if runs else None


def cell_rows(client, tracking: dict[str, Any], suite: str) -> list[dict[str, Any]]:
    """Every finished cell of ``suite`` (newest per config hash) as report rows."""
    rows = []
    for h, r in finished_cells(client, tracking, suite).items():
        coords = {k.removeprefix("cell."): v for k, v in r.data.tags.items() if k.startswith("cell.")}
        rows.append({"coordinates": coords, "metrics": metrics_of(r), "config_hash": h, "run_id": r.info.run_id,
                     "dataset": r.data.tags.get("dataset", "")})
    return rows


# metrics a run logs once, at its end (``dev/micro_f1`` and ``train/*`` are per-step curves)
FINAL_METRIC_PREFIXES = ("test/", "final_dev/", "dev/tuned_", "dev/untuned_")


def metrics_of(run) -> dict[str, float]:
    """A finished cell's final metrics, by the names it logged (``test/*``, ``final_dev/*``,
    ``dev/tuned_*`` from ``decision.tune_on_dev``)."""
    return {k: v for k, v in run.data.metrics.items() if k.startswith(FINAL_METRIC_PREFIXES)}
