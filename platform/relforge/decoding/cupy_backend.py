"""The CUDA masking backend: ``trie_mask.cu`` (package data, beside this
module so the ``*.cu`` package-data glob ships it) run through CuPy.

CuPy is optional (``pip install relforge[gpu]``) and imported only when this
backend runs. Tensors are shared with torch through DLPack (no copies) and the
kernel is launched on torch's current CUDA stream, so it orders correctly with
the surrounding generation step.
"""
from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import torch

from relforge.decoding.trie import LabelTrie

BLOCK = 256
#: -inf bit patterns, as the signed integer types the fill kernels take
NEG_INF_BITS = {
    torch.float16: (torch.int16, np.int16, "trie_fill_16", np.int16(-1024)),  # 0xFC00
    torch.bfloat16: (torch.int16, np.int16, "trie_fill_16", np.int16(-128)),  # 0xFF80
    torch.float32: (torch.int32, np.int32, "trie_fill_32", np.int32(-8388608)),  # 0xFF800000
    torch.float64: (torch.int64, np.int64, "trie_fill_64", np.int64(-4503599627370496)),
}


def kernel_source() -> str:
    return resources.files("relforge.decoding").joinpath("trie_mask.cu").read_text()


@functools.cache
def available() -> bool:
    """True when CuPy imports and sees a CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or a CuPy built for another CUDA
        return False


@functools.cache
def _module(device_index: int):
    import cupy

    with cupy.cuda.Device(device_index):
        return cupy.RawModule(code=kernel_source(), options=("--std=c++14",))


def _int32_arrays(trie: LabelTrie, device: torch.device) -> dict[str, torch.Tensor]:
    cache = trie.__dict__.setdefault("_cupy_arrays", {})
    arrs = cache.get(device)
    if arrs is None:
        arr = trie.arrays(device)
        arrs = {k: getattr(arr, k).to(torch.int32).contiguous()
                for k in ("indptr", "edge_token", "edge_lo", "edge_hi")}
        cache[device] = arrs
    return arrs


def _launch(name: str, device: torch.device, rows: int, vocab: int, args: tuple) -> None:
    import cupy

    if rows == 0:
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    fn = _module(index).get_function(name)
    grid = (min((vocab + BLOCK - 1) // BLOCK, 64), min(rows, 65535))
    stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(index), cupy.cuda.ExternalStream(stream.cuda_stream, index):
        fn(grid, (BLOCK,), args)


def _common_args(trie, states, label_cum, rows_per_example):
    import cupy

    arrs = _int32_arrays(trie, states.device)
    st = states.to(torch.int32).contiguous()
    if label_cum is not None:
        cum = label_cum.to(device=states.device, dtype=torch.int32).contiguous()
        cum_arg, cum_stride = cupy.from_dlpack(cum), cum.shape[1]
    else:
        cum, cum_arg, cum_stride = None, np.uint64(0), 0  # null pointer: no subsets
    keep = (st, cum)  # hold the temporaries until the launch is queued
    args = (cupy.from_dlpack(st), cupy.from_dlpack(arrs["indptr"]), cupy.from_dlpack(arrs["edge_token"]),
            cupy.from_dlpack(arrs["edge_lo"]), cupy.from_dlpack(arrs["edge_hi"]), cum_arg,
            np.int32(cum_stride), np.int32(rows_per_example))
    return args, keep


def apply_mask_(scores: torch.Tensor, trie: LabelTrie, states: torch.Tensor,
                label_cum: torch.Tensor | None = None, rows_per_example: int = 1) -> torch.Tensor:
    import cupy

    if scores.dtype not in NEG_INF_BITS or scores.stride(-1) != 1:
        from relforge.decoding.masking import apply_mask_torch_

        return apply_mask_torch_(scores, trie, states, label_cum, rows_per_example)
    int_dtype, _, name, bits = NEG_INF_BITS[scores.dtype]
    rows, vocab = scores.shape
    common, keep = _common_args(trie, states, label_cum, rows_per_example)
    raw = cupy.from_dlpack(scores.view(int_dtype))
    _launch(name, scores.device, rows, vocab,
            (raw, np.int64(scores.stride(0)), bits, np.int32(vocab), np.int32(rows), *common))
    del keep
    return scores


def allowed_mask(vocab_size: int, trie: LabelTrie, states: torch.Tensor,
                 label_cum: torch.Tensor | None = None, rows_per_example: int = 1) -> torch.Tensor:
    import cupy

    rows = states.numel()
    mask = torch.empty(rows, vocab_size, dtype=torch.uint8, device=states.device)
    common, keep = _common_args(trie, states, label_cum, rows_per_example)
    _launch("trie_mask", states.device, rows, vocab_size,
            (cupy.from_dlpack(mask), np.int32(vocab_size), np.int32(rows), *common))
    del keep
    return mask.bool()
