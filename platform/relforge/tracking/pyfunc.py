"""A RelForge model as an MLflow model: the ``pyfunc`` flavor.

Each run's selected model is logged under the artifact path ``model``
(``runs:/<run id>/model``), so MLflow loads and serves it::

    mlflow models serve -m runs:/<run id>/model --env-manager local -p 5001
    curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' -d '{"dataframe_records":
      [{"text": "Ada Quill was born in Norport .", "head": {"start": 0, "end": 9}, "tail": {"start": 22, "end": 29}}]}'

``predict`` takes the records of the generic JSON format (one head/tail pair,
or a text with ``entities``, every pair scored) as a DataFrame, a list of
dicts or one dict, and returns :meth:`relforge.engine.extractor.Extractor.predict`'s
rows (id, head, tail, relations, scores). ``params={"batch_size": N}`` sets
the batch size.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():  # MLflow's own import infers schemas of its agent types and warns about them
    warnings.filterwarnings("ignore", message=".*Any type hint is inferred as AnyType.*")
    import mlflow.pyfunc


def _clean(value: Any) -> Any:
    """A DataFrame cell as JSON data: missing values (NaN, None) dropped by
    the caller, numpy scalars and arrays as Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not _missing(v)}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def input_records(model_input: Any) -> list[dict[str, Any]]:
    """The records in a pyfunc input (a DataFrame, as the scoring server
    gives it, a list of dicts, or one dict); a DataFrame's missing cells
    (a key one record has and another has not) are left out."""
    if hasattr(model_input, "to_dict") and hasattr(model_input, "columns"):
        rows = model_input.to_dict(orient="records")
    elif isinstance(model_input, dict):
        rows = [model_input]
    else:
        rows = list(model_input)
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"record {i + 1}: expected an object of the generic JSON format, got {row!r}")
        out.append({k: _clean(v) for k, v in row.items() if not _missing(v)})
    return out


# MLflow inspects ``predict``'s type hints when the class is made and when the model is saved, and nags
# about their absence; the records of the generic format are free-form JSON, so there are none to give
_NAGS = (".*type hints to the `predict` method.*", ".*Any type hint is inferred as AnyType.*")
with warnings.catch_warnings():
    for _nag in _NAGS:
        warnings.filterwarnings("ignore", message=_nag)

    class RelForgePyfunc(mlflow.pyfunc.PythonModel):
        """The pyfunc wrapper: the model folder is the artifact ``model``."""

        #: MLflow's switch for classes without type-hint validation (its ChatModel's): no predict wrapper,
        #: no "add type hints" warning at every import (the filter above did not reach it)
        _skip_type_hint_validation = True

        def load_context(self, context) -> None:
            from relforge.engine.extractor import Extractor

            self.extractor = Extractor.from_pretrained(context.artifacts["model"])

        def predict(self, context, model_input, params=None):
            batch_size = int((params or {}).get("batch_size", 32))
            return self.extractor.predict(input_records(model_input), batch_size=batch_size)


#: a model folder's weight files (these suffixes, over 1 MiB) are linked into the MLflow model, not copied
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx")
LINK_ABOVE = 1 << 20


def save_pyfunc(folder: Path, path: Path) -> None:
    """Write the MLflow model of the model folder ``folder`` to ``path`` (a
    new folder): the MLmodel file, the wrapper and the folder's files.

    MLflow copies the folder's other files; its weight files
    (:data:`WEIGHT_SUFFIXES`, over :data:`LINK_ABOVE`) are hard links to
    ``folder``'s where both are on one file system, copies elsewhere: a run's
    model is not written to disk twice (the quickstart wrote ~1.7 GB of such
    copies). RelForge never rewrites a weight file in place: a newly selected
    model is a new folder swapped in, and saving into an existing folder
    (``Extractor.save_pretrained``) first gives its linked files copies of
    their own (:func:`relforge.engine.checkpoint.detach_links`); so a link stays
    the logged model's bytes, and deleting the run folder or the MLflow run
    leaves the other's files whole. The MLmodel names ``folder`` as the
    artifact's source and counts the whole model's size, as a copy would."""
    import importlib.metadata as md
    import shutil
    import tempfile

    from mlflow.models import Model

    folder, path = Path(folder), Path(path)
    reqs = []
    for dist in ("torch", "transformers", "mlflow", "relforge"):
        try:
            reqs.append(f"{dist}=={md.version(dist)}")
        except md.PackageNotFoundError:
            pass
    big = {p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file() and not p.is_symlink()
           and p.stat().st_size > LINK_ABOVE}
    with tempfile.TemporaryDirectory(prefix="relforge-pyfunc-") as tmp:
        stage = Path(tmp) / folder.name  # the folder without its weights, under the folder's own name
        shutil.copytree(folder, stage, ignore=lambda d, names: [n for n in names if Path(d) / n in big])
        with warnings.catch_warnings(), quiet_mlflow():
            for nag in _NAGS:
                warnings.filterwarnings("ignore", message=nag)
            mlflow.pyfunc.save_model(path=str(path), python_model=RelForgePyfunc(), artifacts={"model": str(stage)},
                                     pip_requirements=reqs)
    conf = Model.load(str(path / "MLmodel"))
    artifact = conf.flavors["python_function"]["artifacts"]["model"]
    for src in sorted(big):
        link_or_copy(src, path / artifact["path"] / src.relative_to(folder))
    artifact["uri"] = str(folder)
    conf.model_size_bytes = (conf.model_size_bytes or 0) + sum(p.stat().st_size for p in big)
    conf.save(str(path / "MLmodel"))


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link ``src`` at ``dest``, or copy it where a link cannot be made
    (another file system, a file system without hard links)."""
    import shutil

    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


@contextlib.contextmanager
def quiet_mlflow():
    """Saving a pyfunc model, MLflow says at every run that a Python object is
    pickled (the wrapper is three lines of ours) and copies the model folder
    with a progress bar per file; neither helps a run's log."""
    logger = logging.getLogger("mlflow.pyfunc")
    level, bar = logger.level, os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    logger.setLevel(logging.ERROR)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        logger.setLevel(level)
        if bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = bar
