"""The ONNX Runtime encoder (issue 20): its cache, its recovery from a broken cache entry, and its
one-line refusals. The end-to-end path (predict, evaluate, CLI) is in test_pipeline.py."""
import pytest
import torch

from relforge.engine import onnx_runtime
from relforge.validation import InputError

needs_onnx = pytest.mark.skipif(onnx_runtime.missing_dependency() is not None,
                                reason="relforge[onnx] is not installed")


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir):
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(tiny_bert_dir).eval(), AutoTokenizer.from_pretrained(tiny_bert_dir)


@needs_onnx
def test_states_equal_torch_and_a_broken_cache_entry_is_exported_again(encoder, tmp_path):
    model, tok = encoder
    folder = tmp_path / onnx_runtime.weights_digest(model)
    folder.mkdir()
    (folder / "encoder.onnx.data").write_bytes(b"left by an export that died")  # no encoder.onnx beside it
    ort = onnx_runtime.onnx_encoder(model, tok, cache_dir=tmp_path)
    assert ort.path == folder / "encoder.onnx" and sorted(p.name for p in folder.iterdir()) == ["encoder.onnx"]
    batch = tok(["one short text", "a somewhat longer text with more words in it"], return_tensors="pt", padding=True)
    got = ort(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    with torch.inference_mode():
        want = model(**{k: batch[k] for k in ("input_ids", "attention_mask")}).last_hidden_state
    real = batch["attention_mask"].bool()
    assert torch.allclose(got[real], want[real], atol=1e-4)
    assert ort(input_ids=batch["input_ids"], output_hidden_states=False).last_hidden_state.shape == want.shape
    with pytest.raises(ValueError, match="input_ids and attention_mask only"):
        ort(input_ids=batch["input_ids"], token_type_ids=torch.zeros_like(batch["input_ids"]))


@needs_onnx
def test_an_export_that_disagrees_with_torch_is_refused_in_one_line(encoder, tmp_path, monkeypatch):
    model, tok = encoder
    monkeypatch.setattr(onnx_runtime, "TOLERANCE", -1.0)
    with pytest.raises(InputError, match="differs from the torch encoder .* delete that folder"):
        onnx_runtime.onnx_encoder(model, tok, cache_dir=tmp_path)
    folder = tmp_path / onnx_runtime.weights_digest(model)
    (folder / "encoder.onnx").write_bytes(b"not an onnx graph")
    monkeypatch.setattr(onnx_runtime, "TOLERANCE", 1e-3)
    with pytest.raises(InputError, match="could not load .* delete the folder"):
        onnx_runtime.onnx_encoder(model, tok, cache_dir=tmp_path)


@needs_onnx
def test_the_cache_key_follows_the_weights(encoder):
    model, _ = encoder
    key = onnx_runtime.weights_digest(model)
    with torch.no_grad():
        p = next(model.parameters())
        saved = p.clone()
        p.add_(1.0)
        try:
            assert onnx_runtime.weights_digest(model) != key
        finally:
            p.copy_(saved)
    assert onnx_runtime.weights_digest(model) == key


def test_without_onnxruntime_the_refusal_names_the_extra(monkeypatch):
    import importlib.util

    from relforge.components import HasEncoder
    from relforge.engine.extractor import Extractor

    class Tiny(torch.nn.Module, HasEncoder):
        name = "tiny"

        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Linear(2, 2)

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(InputError, match=r"needs onnxruntime: pip install 'relforge\[onnx\]'"):
        Extractor(Tiny(), None, {}).use_onnx()


@needs_onnx
def test_a_failed_export_is_one_line_and_leaves_no_cache_entry(encoder, tmp_path, monkeypatch):
    model, tok = encoder

    def broken(*args, **kwargs):
        print("exporter chatter")
        raise RuntimeError("unsupported operator aten::foo\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(InputError, match=r"could not export this encoder to ONNX \(RuntimeError: unsupported "
                                         r"operator aten::foo\); run without --runtime onnx"):
        onnx_runtime.onnx_encoder(model, tok, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # the temporary export folder is gone, nothing half-written is kept
