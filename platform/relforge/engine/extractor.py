"""Prediction with a trained model, from Python and from the CLI.

    extractor = Extractor.from_pretrained("runs/cptuning-.../best")
    extractor.predict([{"text": "Ada was born in Paris .",
                        "head": {"start": 0, "end": 3, "type": "PER"},
                        "tail": {"start": 16, "end": 21, "type": "LOC"}}])

Inputs are :class:`~relforge.data.example.Example` objects, records of the
generic JSON-lines format (``relforge/data/README.md``), without relations,
or mention records (a text and its ``entities``; :mod:`relforge.data.mentions`)
of which every ordered pair (or the listed ``pairs``) is scored::

    extractor.predict([{"text": "Ada was born in Paris .",
                        "entities": [{"start": 0, "end": 3}, {"start": 16, "end": 21}]}])
"""
from __future__ import annotations

import dataclasses
import json

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelHubMixin

from relforge.config import ResolvedConfig
from relforge.data.example import Example
from relforge.engine.decision import decide


#: what runs a loaded model's inference: torch (the default), or its encoder on ONNX Runtime
RUNTIMES = ("torch", "onnx")


class Extractor(ModelHubMixin, library_name="relforge", tags=["relation-extraction"]):
    """A trained model ready to predict; a Hub model (``save_pretrained``,
    ``push_to_hub``, ``from_pretrained`` of a folder or a repository id,
    :mod:`relforge.engine.hub`)."""

    def __init__(self, model, resolved: ResolvedConfig, meta: Mapping[str, Any],
                 results: Mapping[str, float] | None = None) -> None:
        self.model, self.resolved, self.meta = model, resolved, dict(meta)
        #: the final metrics that go with the model (its run's result.json), for the model card
        self.results = dict(results or {})
        self.model.eval()
        # the mixin keeps the constructor's JSON-able arguments to write as config.json; a RelForge folder's
        # config.json is the backbone's and everything else is in relforge.json
        self._hub_mixin_config = None

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device: str | None = None, registry=None,
                        revision: str | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = False, token: str | bool | None = None,
                        force_download: bool = False, quantize: str | None = None,
                        runtime: str | None = None) -> Extractor:
        """A model folder, a run folder (its ``best/``) or a Hub repository
        id (``org/name``, downloaded into the Hub cache; ``HF_HUB_OFFLINE=1``
        or ``local_files_only`` read the cache only). ``quantize="int8"``:
        :meth:`quantize`; ``runtime="onnx"``: :meth:`use_onnx`."""
        from relforge.validation import InputError

        if runtime is not None and runtime not in RUNTIMES:
            raise InputError(f"runtime {runtime!r}: torch (the default) or onnx")
        if runtime == "onnx" and quantize:
            raise InputError("runtime onnx and quantize int8 do not combine: choose one")
        from relforge.engine.build import load_saved
        from relforge.engine.hub import local_model_folder, read_results

        # not ModelHubMixin.from_pretrained: that one reads a config.json as the constructor's arguments,
        # and a RelForge folder's config.json is the backbone's
        local = local_model_folder(folder)
        if local is None:
            local = _download(str(folder), revision=revision, cache_dir=cache_dir, force_download=force_download,
                              local_files_only=local_files_only, token=token)
        model, resolved, meta = load_saved(local, registry=registry)
        on_cpu = quantize or runtime == "onnx"
        model.to("cpu" if on_cpu else device or ("cuda" if torch.cuda.is_available() else "cpu"))
        extractor = cls(model, resolved, meta, read_results(local))
        if quantize:
            extractor.quantize(quantize, device=device)
        if runtime == "onnx":
            extractor.use_onnx(device=device)
        return extractor

    def use_onnx(self, *, device: str | None = None, cache_dir: str | Path | None = None) -> Extractor:
        """Run the model's encoder with ONNX Runtime on the CPU
        (:mod:`relforge.engine.onnx_runtime`: exported once, cached under a
        digest of its weights, checked against the torch encoder before use).
        Encoder models only (``relforge.marker_classifier``); the head and the
        decisions stay in torch."""
        from relforge.components import HasEncoder
        from relforge.engine.onnx_runtime import OnnxEncoder, missing_dependency, onnx_encoder
        from relforge.validation import InputError

        if not isinstance(self.model, HasEncoder):
            raise InputError(f"runtime onnx: {type(self.model).name} is not an encoder model (only the encoder of "
                             f"models such as relforge.marker_classifier is exported); use --quantize int8 for a "
                             f"faster CPU run of this model")
        if isinstance(self.model.encoder, OnnxEncoder):
            return self
        if device not in (None, "cpu") or next(self.model.parameters()).device.type != "cpu":
            raise InputError("runtime onnx runs on the CPU: drop the device, or load with "
                             "Extractor.from_pretrained(..., runtime='onnx')")
        need = missing_dependency()
        if need:
            raise InputError(f"runtime onnx needs onnxruntime: {need}")
        self.model.encoder = onnx_encoder(self.model.encoder, self.model.tokenizer, cache_dir=cache_dir)
        self.meta["runtime"] = "onnx"
        return self

    def quantize(self, kind: str = "int8", *, device: str | None = None) -> Extractor:
        """Dynamic int8 quantisation of every linear layer for CPU inference
        (``torch.ao.quantization.quantize_dynamic``: int8 weights, activations
        quantised on the fly). Predictions can differ from the float model's;
        ``benchmarks/perf/inference.py`` measures speed and agreement."""
        from relforge.validation import InputError

        if kind != "int8":
            raise InputError(f"quantize {kind!r}: only int8 (dynamic quantisation of linear layers) is supported")
        if device not in (None, "cpu") or next(self.model.parameters()).device.type != "cpu":
            raise InputError("int8 dynamic quantisation runs on the CPU: drop the device or quantize")
        import warnings

        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():  # torch says the eager API moves to torchao; it is what runs here
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
            quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        self.meta["quantized"] = kind
        return self

    def _save_pretrained(self, save_directory: Path) -> None:
        """The model folder, its ``results.json`` and a model card
        (``README.md``), files readable like any checkpoint."""
        from relforge.engine.checkpoint import detach_links, share_files
        from relforge.engine.hub import RESULTS_FILE
        from relforge.models.backbone import quiet_local_io
        from relforge.validation import InputError

        if self.meta.get("quantized"):
            raise InputError(f"this model was quantized ({self.meta['quantized']}) for inference and cannot be "
                             f"saved or pushed: load it again without quantize")
        if self.meta.get("runtime") == "onnx":
            raise InputError("this model runs its encoder on ONNX Runtime for inference and cannot be saved or "
                             "pushed: load it again without runtime onnx")

        keep = {k: self.meta[k] for k in ("config", "relforge_run_id", "plugins") if k in self.meta}
        if Path(save_directory).is_dir():  # saving over a run's best/: its logged MLflow model keeps its bytes
            detach_links(Path(save_directory))
        with quiet_local_io():
            self.model.save(Path(save_directory), keep)
        if self.results:
            (Path(save_directory) / RESULTS_FILE).write_text(json.dumps({"metrics": self.results}, indent=2),
                                                             encoding="utf-8")
        share_files(Path(save_directory))

    def generate_model_card(self, *args, **kwargs):
        from relforge.engine.hub import make_card

        return make_card(self.meta, self.results, repo_id=kwargs.get("repo_id"))

    @property
    def labels(self) -> list[str]:
        return list(self.model.labels)

    def to_example(self, rec: Example | Mapping[str, Any], *, path: str | Path = "<input>", where: str = "record 1",
                   default_id: str = "0") -> Example:
        """One input record as an :class:`Example` (the generic format); a bad
        record is a ``DataFormatError`` naming ``path`` and ``where``."""
        from relforge.data.readers.jsonl import parse_generic

        if isinstance(rec, Example):
            return rec
        rec = dict(rec) if isinstance(rec, Mapping) else rec
        if isinstance(rec, dict):
            rec.setdefault("relations", [])
        return parse_generic(rec, Path(path), where, default_id, self.model.no_relation, None)

    def to_pair_examples(self, rec: Example | Mapping[str, Any], *, path: str | Path = "<input>",
                         where: str = "record 1", default_id: str = "0") -> list[Example]:
        """The examples of one input: itself, or every pair of a mention
        record (:mod:`relforge.data.mentions`); a bad record or entity is a
        ``DataFormatError`` naming ``path``, ``where`` and the field."""
        from relforge.data.errors import DataFormatError
        from relforge.data.mentions import expand_mentions, is_mention_record, rename_entity_field

        if not is_mention_record(rec):
            return [self.to_example(rec, path=path, where=where, default_id=default_id)]
        out = []
        for pair in expand_mentions(dict(rec), Path(path), where, default_id):
            try:
                out.append(self.to_example(pair, path=path, where=where, default_id=default_id))
            except DataFormatError as exc:
                raise rename_entity_field(exc, pair["meta"]["pair"]) from exc
        return out

    def to_examples(self, records: Iterable[Example | Mapping[str, Any]]) -> list[Example]:
        return [ex for i, rec in enumerate(records)
                for ex in self.to_pair_examples(rec, where=f"record {i + 1}", default_id=str(i))]

    def predict(self, records: Sequence[Example | Mapping[str, Any]], *, batch_size: int = 32,
                top_k: int = 5, by_length: bool = True) -> list[dict[str, Any]]:
        """One dict per scored pair (one per input, or one per pair of a
        mention record): id, head, tail, predicted ``relations`` (empty = no
        relation) and the ``top_k`` candidates with their scores; a mention
        record's pairs also carry ``record`` (its id) and ``pair`` (the head
        and tail entity indices). ``by_length``: rank in length-sorted
        batches (less padding), under ``torch.inference_mode``; the rows come
        back in input order either way."""
        examples = self.to_examples(records)
        # prediction does not read gold labels: a record's own labels (known to the model or not) are
        # neither checked nor needed to rank
        unlabelled = [dataclasses.replace(ex, relations=frozenset()) if ex.relations else ex for ex in examples]
        # length-bucketed batches: ranked shortest first (less padding per batch), answered in input order
        from relforge.engine.pipeline import rank_by_length

        with torch.inference_mode():
            rankings = rank_by_length(self.model, unlabelled, batch_size) if by_length else \
                self.model.rank(unlabelled, batch_size=batch_size)
        out = []
        for ex, ranking in zip(examples, rankings):
            relations = decide(ranking, self.model.no_relation, self.resolved.run.decision)
            row = {"id": ex.id, "head": ex.head.text, "tail": ex.tail.text, "relations": sorted(relations),
                   "scores": {c.label: round(float(c.score), 6) for c in ranking[:top_k]}}
            if "pair" in ex.meta and "record" in ex.meta:
                row["record"], row["pair"] = ex.meta["record"], list(ex.meta["pair"])
            out.append(row)
        return out


def _download(repo_id: str, **kwargs: Any) -> Path:
    """The snapshot folder of a Hub repository (from the cache when offline);
    a missing repository or an offline cache miss is an ``InputError`` that
    says what to do."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    from relforge.validation import InputError

    try:
        return Path(snapshot_download(repo_id, **kwargs))
    except HFValidationError:
        raise InputError(f"{repo_id}: neither a model folder (with relforge.json, or a run folder with best/) nor "
                         f"a Hub repository id (org/name)") from None
    except RepositoryNotFoundError:
        raise InputError(f"{repo_id}: no such Hub repository (or it is private: log in with `hf auth login` or "
                         f"pass a token)") from None
    except LocalEntryNotFoundError:
        raise InputError(f"{repo_id}: not in the Hub cache and the Hub cannot be reached (offline); download it "
                         f"where there is a network, or give a local model folder") from None
