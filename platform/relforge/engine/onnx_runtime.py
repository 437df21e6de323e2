"""An encoder model's encoder on ONNX Runtime, for CPU serving (``relforge predict --runtime onnx``,
``Extractor.from_pretrained(..., runtime="onnx")``).

The encoder (a ``transformers`` encoder: what a marker classifier spends nearly all its inference
time in) is exported once with ``torch.onnx.export(dynamo=True)`` (the TorchScript exporter gave
wrong states on this MiniLM: it fixed the attention-mask path to the example batch's shape), with
the batch and the sequence length dynamic, checked against the torch encoder on a sample batch
before it is used, and run through an ``onnxruntime.InferenceSession`` on the CPU. The rest of
the model (markers, head, decisions) stays in torch. Seq2seq models are refused: their decoding
loop is not exported. ``benchmarks/perf/inference.py`` measures speed and agreement.

The export is kept in ``cache_dir`` (default ``~/.cache/relforge/onnx``) under a digest of the
encoder's weights, so a second load of the same model does not export again.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import torch

#: the largest difference allowed between the exported and the torch encoder's states on the check batch
TOLERANCE = 1e-3


def missing_dependency() -> str | None:
    """The pip command that installs what the ONNX path needs, or None when it is there."""
    from importlib.util import find_spec

    if any(find_spec(name) is None for name in ("onnx", "onnxruntime", "onnxscript")):
        return "pip install 'relforge[onnx]' (onnxruntime, onnx, onnxscript)"
    return None


#: part of the cache key: a change to what is exported (inputs, outputs, exporter) must not reuse old graphs
EXPORT_FORMAT = "states-v1"


def weights_digest(module: torch.nn.Module) -> str:
    """The cache key: the weights, their names and shapes, the export format and the torch version."""
    h = hashlib.sha256(f"{EXPORT_FORMAT}|torch {torch.__version__}".encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]


class _States(torch.nn.Module):
    def __init__(self, encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_encoder(encoder, tokenizer, path: Path) -> Path:
    """``encoder`` as an ONNX graph at ``path`` (batch and length dynamic); a failed export is an
    ``InputError`` (the exporter's own report goes to stderr)."""
    sample = tokenizer(["a short sample sentence for the export .", "two"], return_tensors="pt", padding=True)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    path.parent.mkdir(parents=True, exist_ok=True)
    import io
    import logging
    import warnings

    # the exporter reports its steps on stdout (where `relforge predict -o -` writes predictions) and logs
    # about operators it skips: kept out of sight, shown only if the export fails
    chatter = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_States(encoder.eval()), (sample["input_ids"], sample["attention_mask"]),
                              str(path),
                              input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                              dynamic_shapes={"input_ids": {0: batch, 1: seq},
                                              "attention_mask": {0: batch, 1: seq}},
                              dynamo=True, external_data=False, verbose=False)
    except Exception as exc:
        from relforge.validation import InputError

        sys.stderr.write(chatter.getvalue())
        raise InputError(f"could not export this encoder to ONNX ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); run without --runtime onnx "
                         f"(--debug shows the exporter's traceback)") from exc
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    return path


class OnnxEncoder(torch.nn.Module):
    """Stands in for a ``transformers`` encoder: ``forward(input_ids,
    attention_mask)`` returns its ``last_hidden_state`` computed by ONNX
    Runtime. It has no parameters (inference only)."""

    def __init__(self, session, config, path: Path) -> None:
        super().__init__()
        self.session, self.config, self.path = session, config, path

    def forward(self, input_ids=None, attention_mask=None, **kwargs: Any):
        from transformers.modeling_outputs import BaseModelOutput

        extra = sorted(k for k, v in kwargs.items() if v is not None and v is not False and k != "return_dict")
        if extra or input_ids is None:
            raise ValueError(f"the ONNX encoder takes input_ids and attention_mask only (got {extra or 'no input_ids'});"
                             f" load the model without --runtime onnx for this use")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.session.run(["last_hidden_state"], {"input_ids": input_ids.cpu().long().numpy(),
                                                        "attention_mask": attention_mask.cpu().long().numpy()})[0]
        return BaseModelOutput(last_hidden_state=torch.from_numpy(out))


def onnx_encoder(encoder, tokenizer, *, cache_dir: str | Path | None = None, threads: int | None = None) -> OnnxEncoder:
    """The encoder on ONNX Runtime, exported (or taken from ``cache_dir``),
    checked against the torch encoder on a sample batch."""
    import onnxruntime as ort

    from relforge.validation import InputError

    root = Path(cache_dir or os.environ.get("RELFORGE_ONNX_CACHE", Path.home() / ".cache" / "relforge" / "onnx"))
    digest = weights_digest(encoder)
    folder = root / digest
    path = folder / "encoder.onnx"
    if not path.is_file():
        # exported into a folder of its own, then moved into place whole: an interrupted export leaves no
        # half-written file behind, and two processes exporting at once both end with a complete one
        import shutil
        import tempfile

        root.mkdir(parents=True, exist_ok=True)
        if folder.exists():  # left by an export that did not finish, or a file deleted by hand
            shutil.rmtree(folder, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f"{digest}.", dir=root))
        print(f"relforge: exporting the encoder to ONNX once (kept at {path})", file=sys.stderr)
        try:
            export_encoder(encoder, tokenizer, work / "encoder.onnx")
            work.chmod(0o755)  # mkdtemp's folders are the owner's only; a shared cache is read by others
            try:
                os.replace(work, folder)
            except OSError:  # another process put its export there first
                if not path.is_file():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(f"ONNX Runtime could not load {path} ({type(exc).__name__}); delete the folder {folder} "
                         f"to export again, or run without --runtime onnx") from exc
    stand_in = OnnxEncoder(session, encoder.config, path)
    check = tokenizer(["Ada Lovelace was born in London , the report says .", "Paris ."], return_tensors="pt",
                      padding=True)
    with torch.inference_mode():
        want = encoder.eval()(input_ids=check["input_ids"], attention_mask=check["attention_mask"]).last_hidden_state
    got = stand_in(input_ids=check["input_ids"], attention_mask=check["attention_mask"]).last_hidden_state
    real = check["attention_mask"].bool()
    diff = float((got - want.float())[real].abs().max())
    if diff > TOLERANCE:
        raise InputError(f"the ONNX export in {folder} differs from the torch encoder by {diff:.2e} (more than "
                         f"{TOLERANCE}); delete that folder to export again, or run without --runtime onnx")
    return stand_in
