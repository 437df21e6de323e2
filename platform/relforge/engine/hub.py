"""Models that travel: a saved RelForge model folder as a Hugging Face Hub
repository, with a generated model card.

:class:`~relforge.engine.extractor.Extractor` is a ``huggingface_hub``
``ModelHubMixin``: ``save_pretrained(dir)`` writes the model folder (the
backbone's files, ``relforge.json``, the component state), ``results.json``
(the run's final metrics, when known) and ``README.md`` (the card made
here); ``push_to_hub(repo_id)`` uploads them; ``from_pretrained`` takes a
local folder (a model folder or a run folder) or a Hub repository id, and
honours the Hub client's offline mode (``HF_HUB_OFFLINE=1``) and cache.
``relforge push RUN REPO_ID`` does it from the command line.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

#: the metrics file of a run folder (``relforge train``) and of a saved model folder
RUN_RESULT_FILE = "result.json"
RESULTS_FILE = "results.json"

#: the kind of metric shown first in the card, in this order
_HEADLINE = ("official_macro_f1", "micro_f1", "multi_micro_f1", "accuracy", "macro_f1")


def local_model_folder(path: str | Path) -> Path | None:
    """``path`` as a model folder (``relforge.json`` in it or in its
    ``best/``), or None when it is not a local folder."""
    from relforge.engine.models import META_FILE

    p = Path(path)
    for candidate in (p, p / "best"):
        if (candidate / META_FILE).is_file():
            return candidate
    return None


def read_results(folder: Path) -> dict[str, float]:
    """The final metrics that go with a model folder: its own
    ``results.json`` (a saved or downloaded model), or its run's
    ``result.json`` (the ``best/`` folder of a ``relforge train`` run)."""
    for path in (folder / RESULTS_FILE, folder.parent / RUN_RESULT_FILE):
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                return {}
            metrics = data.get("metrics", data) if isinstance(data, dict) else {}
            return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    return {}


def _headline(results: Mapping[str, float]) -> list[tuple[str, float]]:
    """The test metrics first (headline kinds first), then final dev ones."""
    out = []
    for prefix in ("test/", "final_dev/"):
        keys = [k for k in results if k.startswith(prefix) and "/" not in k[len(prefix):]]
        keys.sort(key=lambda k: (next((i for i, h in enumerate(_HEADLINE) if k.endswith("/" + h)), len(_HEADLINE)), k))
        out += [(k, results[k]) for k in keys]
    return out


def card_data(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The card's metadata (front matter) for a model's ``relforge.json``."""
    config = meta.get("config") or {}
    dataset = (config.get("data") or {}).get("dataset")
    name = dataset.get("name") if isinstance(dataset, dict) else dataset
    tags = ["relforge", "relation-extraction"]
    if config.get("method"):
        tags.append(str(config["method"]))
    return {"library_name": "relforge", "tags": tags, "datasets": [str(name)] if name else None,
            "pipeline_tag": "text2text-generation" if meta.get("model") != "marker_classifier" else None}


def model_card_text(meta: Mapping[str, Any], results: Mapping[str, float], *, repo_id: str | None = None) -> str:
    """The body of the model card: what the model is (method and
    components), the data it was trained on, its metrics, how to use it and
    the configuration with the command that reproduces it."""
    config = dict(meta.get("config") or {})
    method = config.get("method") or "a custom configuration"
    parts = []
    for section in ("model", "template", "loss", "decoder", "retriever"):
        value = config.get(section)
        nm = value.get("name") if isinstance(value, dict) else value
        if nm:
            parts.append(f"{section} `{nm}`")
    stages = [s.get("name") if isinstance(s, dict) else s for s in config.get("pretraining") or []]
    data = config.get("data") or {}
    dataset = data.get("dataset")
    dname = dataset.get("name") if isinstance(dataset, dict) else dataset
    plugins = meta.get("plugins") or {}
    versions = ", ".join(f"{k} {v.get('version')}" for k, v in plugins.items() if isinstance(v, dict))
    where = repo_id or "path/to/this/folder"
    labels = list(meta.get("labels") or [])
    lines = [f"# RelForge relation extraction model: {method}", "",
             f"A relation extraction model trained with RelForge "
             f"(method `{method}`; {', '.join(parts) or 'components in the configuration below'}"
             + (f"; pretraining stages {', '.join(f'`{s}`' for s in stages)}" if stages else "") + ").",
             "", f"* Data: `{dname}`" + (f", sampling `{json.dumps(data.get('sampling'))}`" if data.get("sampling")
                                          else ""),
             f"* Relation labels ({len(labels)}): " + ", ".join(f"`{lab}`" for lab in labels[:40])
             + (" ..." if len(labels) > 40 else "") + f"; no relation: `{meta.get('no_relation')}`",
             f"* Seed: {config.get('seed')}; run id: `{meta.get('relforge_run_id')}`",
             f"* Made with: {versions or 'unknown versions'}", ""]
    head = _headline(results)
    lines += ["## Results", ""]
    if head:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in head] + [""]
        if not any(k.startswith("test/") for k, _ in head):
            lines += ["No test split was scored for this model (the figures are on dev).", ""]
    else:
        lines += ["No metrics were recorded with this model.", ""]
    lines += ["## Use", "", "```bash", "pip install relforge  # with the plugins named above", "```", "",
              "```python", "from relforge.engine.extractor import Extractor", "",
              f'ex = Extractor.from_pretrained("{where}")',
              'ex.predict([{"text": "Ada Quill was born in Norport .",',
              '             "entities": [{"start": 0, "end": 9}, {"start": 22, "end": 29}]}])', "```", "",
              "or from the command line, on JSON lines in RelForge's generic format:", "", "```bash",
              f"relforge predict {where} --input records.jsonl --output predictions.jsonl", "```", "",
              "## Reproduce", "",
              "The configuration this model was trained with (secrets redacted):", "", "```yaml",
              yaml.safe_dump(config, sort_keys=False).rstrip(), "```", "",
              "```bash", "relforge train config.yaml  # the configuration above, saved as config.yaml",
              "```", ""]
    return "\n".join(lines)


def make_card(meta: Mapping[str, Any], results: Mapping[str, float], *, repo_id: str | None = None):
    """A ``huggingface_hub.ModelCard``: front matter from :func:`card_data`,
    body from :func:`model_card_text`."""
    from huggingface_hub import ModelCard, ModelCardData

    fields = {k: v for k, v in card_data(meta).items() if v is not None}
    data = ModelCardData(**fields)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{model_card_text(meta, results, repo_id=repo_id)}")
