"""Suite files and their expansion into cells.

A suite is YAML::

    name: quickstart
    description: every method on the embedded data set
    base:                       # configuration shared by every cell
      data: {dataset: quickstart}
      train: {epochs: 2}
    matrix:                     # key path -> values; the cells are the product
      method: all               # "all": every registered method
      seed: [13, 42]
    exclude:                    # cells to leave out (all listed coordinates match)
      - {method: tkre, data.dataset: nyt}
    overrides:                  # extra settings for the cells that match `when`
      - when: {method: generative_ce}      # a list of values matches any of them
        set: {decoder.num_beams: 2}
    metrics: [test/micro_f1]    # what the comparison table shows (test/*, final_dev/*)
    compare:                    # paired tests in `relforge report` (default: arms differing in one coordinate)
      baseline: {method: generative_ce}
    register:                   # the cell best on a dev metric -> a version of an MLflow registered model
      {name: my-re-model, metric: final_dev/best_micro_f1}

A cell's configuration is: method defaults < ``base`` < its coordinates <
matching ``overrides`` (validated like any run configuration).
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from relforge.config import ConfigError, ResolvedConfig, config_hash, load_config


class _When(BaseModel):
    model_config = ConfigDict(extra="forbid")
    when: dict[str, Any] = Field(default_factory=dict)
    set: dict[str, Any]


class CompareSpec(BaseModel):
    """``compare: {baseline: {method: generative_ce}}``: which arm each other
    arm is compared with (paired tests in ``relforge report``)."""

    model_config = ConfigDict(extra="forbid")
    baseline: dict[str, Any] = Field(default_factory=dict)
    #: resamples of the paired bootstrap and the permutation test
    resamples: int = Field(10_000, ge=100)


class RegisterSpec(BaseModel):
    """``register: {name: semeval-re, metric: final_dev/best_micro_f1}``:
    after the suite, the model of the cell best on ``metric`` (a dev metric:
    selecting on test would tune on it) becomes a new version of the MLflow
    registered model ``name``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    metric: str = "final_dev/best_micro_f1"

    @field_validator("metric")
    @classmethod
    def _dev_only(cls, v: str) -> str:
        if v.startswith("test/"):
            raise ValueError(f"register.metric {v!r}: choosing the model to register on test tunes on test; use a "
                             f"dev metric (final_dev/best_micro_f1, final_dev/best_official_macro_f1, ...)")
        return v


class SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    matrix: dict[str, Any] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    overrides: list[_When] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=lambda: ["test/micro_f1"])
    compare: CompareSpec | None = None
    #: the suite file's ``register:`` (a field of that name would shadow pydantic's BaseModel.register)
    register_best: RegisterSpec | None = Field(None, alias="register")
    #: where the cells run: ``{name: slurm, partition: gpu, gpus_per_node: 1, ...}`` (an executor's settings;
    #: ``relforge bench --executor`` / ``--executor-set`` override it)
    executor: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _name_stays_inside(cls, v: str) -> str:
        from relforge.config import folder_name

        return folder_name(v, "suite name")


@dataclass
class Cell:
    coordinates: dict[str, Any]
    overrides: list[str]
    resolved: ResolvedConfig | None = None
    error: str | None = None
    config_hash: str = ""

    @property
    def cell_id(self) -> str:
        parts = [f"{k.split('.')[-1]}={_short(v)}" for k, v in self.coordinates.items()]
        return ",".join(parts) or "default"


def _short(v: Any) -> str:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)


def _matches(coords: Mapping[str, Any], pattern: Mapping[str, Any]) -> bool:
    """Every key of ``pattern`` is a coordinate with that value; a list of
    values matches any of them (unless the coordinate itself is that list)."""
    return all(k in coords and (coords[k] == v or (isinstance(v, list) and coords[k] in v))
               for k, v in pattern.items())




def read_suite(path: str | Path) -> SuiteFile:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"suite file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return SuiteFile.model_validate(raw or {})
    except ValidationError as exc:
        from relforge.config import format_validation_error

        raise ConfigError(f"{path}: invalid suite:\n  " + "\n  ".join(format_validation_error(exc))) from None


def expand(spec: SuiteFile, *, registry=None, extra_overrides: list[str] = ()) -> list[Cell]:
    """The suite's cells in a stable order, each resolved and validated (a
    cell whose configuration is invalid carries the error instead)."""
    from relforge.components import ComponentKind
    from relforge.registry import get_registry

    registry = registry or get_registry()
    axes: dict[str, list[Any]] = {}
    for key, values in spec.matrix.items():
        if key == "method" and values == "all":
            values = [c.name for c in registry.components(ComponentKind.METHOD)]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"suite {spec.name!r}: matrix.{key} must be a non-empty list (or 'all' for method)")
        axes[key] = values
    # a `when` or `exclude` naming a key or value outside the matrix is a typo
    patterns = [("exclude", ex) for ex in spec.exclude] + [("overrides", o.when) for o in spec.overrides]
    for where, pattern in patterns:
        unknown = [k for k in pattern if k not in axes]
        if unknown:
            raise ConfigError(f"suite {spec.name!r}: {where} names {unknown}, which are not matrix keys "
                              f"{sorted(axes)}")
        for key, wanted in pattern.items():
            values = axes[key]
            options = [wanted] if wanted in values or not isinstance(wanted, list) else wanted
            if any(o not in values for o in options):
                raise ConfigError(f"suite {spec.name!r}: {where} names {key}={wanted!r}, which is not "
                                  f"among the matrix values {values}")
    cells = []
    for combo in itertools.product(*axes.values()) if axes else [()]:
        coords = dict(zip(axes, combo))
        if any(_matches(coords, ex) for ex in spec.exclude):
            continue
        overrides = [f"{k}={_yaml_value(v)}" for k, v in coords.items()]
        for o in spec.overrides:
            if _matches(coords, o.when):
                overrides += [f"{k}={_yaml_value(v)}" for k, v in o.set.items()]
        overrides += list(extra_overrides)
        cell = Cell(coordinates=coords, overrides=overrides)
        try:
            cell.resolved = load_config([], overrides, registry=registry, base=spec.base)
            cell.config_hash = config_hash(cell.resolved.data)
        except ConfigError as exc:
            cell.error = str(exc)
        cells.append(cell)
    return cells


def _yaml_value(v: Any) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v)
