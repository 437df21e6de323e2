"""The CUDA kernel source compiles with nvcc; the CuPy backend on a GPU."""
import shutil
import subprocess

import pytest
import torch

from relforge.decoding import cupy_backend
from relforge.decoding.masking import allowed_mask, apply_mask_
from relforge.decoding.trie import LabelTrie

KERNELS = ("trie_fill_16", "trie_fill_32", "trie_fill_64", "trie_mask")


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found")
def test_kernel_source_compiles_with_nvcc(tmp_path):
    src = tmp_path / "trie_mask.cu"
    src.write_text(cupy_backend.kernel_source())
    ptx = tmp_path / "trie_mask.ptx"
    res = subprocess.run(["nvcc", "--ptx", "--std=c++14", str(src), "-o", str(ptx)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    text = ptx.read_text()
    for name in KERNELS:
        assert f".entry {name}(" in text


def test_cupy_backend_imports_lazily():
    # importing the backend module must not need CuPy; available() says whether it runs
    assert isinstance(cupy_backend.available(), bool)
    assert "__global__" in cupy_backend.kernel_source()


needs_gpu = pytest.mark.skipif(not (torch.cuda.is_available() and cupy_backend.available()),
                               reason="needs a CUDA device and CuPy")


def _random_case(seed, rows=64, vocab=3000, labels=40, examples=8):
    g = torch.Generator().manual_seed(seed)
    seqs = {f"L{i}": torch.randint(2, vocab, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g).tolist() + [1]
            for i in range(labels)}
    trie = LabelTrie(seqs, pad_token_id=0, end_token_id=1)
    states = torch.randint(0, trie.num_nodes, (rows,), generator=g)
    lmask = torch.rand(examples, labels, generator=g) < 0.5
    return trie, states, LabelTrie.label_cumsum(lmask), rows // examples


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("subset", [False, True])
def test_cupy_equals_torch(dtype, subset):
    for seed in range(5):
        trie, states, cum, rpe = _random_case(seed)
        cum = cum if subset else None
        dev = torch.device("cuda")
        scores = torch.randn(states.numel(), 3000, device=dev).to(dtype)
        a = apply_mask_(scores.clone(), trie, states.to(dev), label_cum=None if cum is None else cum.to(dev),
                        rows_per_example=rpe, backend="torch")
        b = apply_mask_(scores.clone(), trie, states.to(dev), label_cum=None if cum is None else cum.to(dev),
                        rows_per_example=rpe, backend="cupy")
        assert torch.equal(a, b)
        ma = allowed_mask(3000, trie, states.to(dev), label_cum=None if cum is None else cum.to(dev),
                          rows_per_example=rpe, backend="torch")
        mb = allowed_mask(3000, trie, states.to(dev), label_cum=None if cum is None else cum.to(dev),
                          rows_per_example=rpe, backend="cupy")
        assert torch.equal(ma, mb)
        assert torch.equal(ma.cpu(), allowed_mask(3000, trie, states, label_cum=cum, rows_per_example=rpe,
                                                  backend="torch"))


@pytest.mark.gpu
@needs_gpu
def test_auto_backend_picks_cupy_on_cuda_and_runs_on_the_current_stream():
    from relforge.decoding.masking import resolve_backend

    assert resolve_backend("auto", torch.device("cuda")) == "cupy"
    trie, states, cum, rpe = _random_case(7)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        scores = torch.randn(states.numel(), 3000, device="cuda")
        ref = apply_mask_(scores.clone(), trie, states.cuda(), backend="torch")
        out = apply_mask_(scores, trie, states.cuda(), backend="auto")
        assert torch.equal(out, ref)
    stream.synchronize()
