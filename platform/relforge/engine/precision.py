"""Which autocast precision a run trains in (``train.mixed_precision``).

``no``: full precision. ``bf16``: bfloat16 autocast for the training steps (on
a GPU, or on a CPU: oneDNN runs bf16 matrix products natively on CPUs with
AVX512-BF16 or AMX, about 2.6x the float32 rate on the project's 2-core AMD
EPYC, ``benchmarks/results/precision-cpu-2026-12-04.md``). ``fp16``: float16
autocast with loss scaling, a GPU mode. ``auto``: bf16 where the device does it
natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX), otherwise full
precision.

Only the training steps (fine-tuning and the pretraining stages) run under
autocast; evaluation and prediction rank in full precision, so a model's
scores do not depend on this setting beyond what training learned. Inside a
step, similarities divided by a temperature (the retrievers' cosine
similarities and soft neighbours, TKRE's InfoNCE) and ETRAG's memory cache are
computed in float32 (:func:`full_precision`). Where the
precision used differs from the one asked for, or bf16 is emulated, the run
says so once and records what it used (the run's ``precision`` tag).
"""
from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path
from typing import Literal, get_args

#: the values of ``train.mixed_precision`` (the configuration's type)
Mode = Literal["no", "bf16", "fp16", "auto"]
MODES: tuple[str, ...] = get_args(Mode)


@functools.lru_cache(maxsize=None)
def cpu_bf16_native() -> bool:
    """Whether this CPU multiplies bf16 natively (x86: the avx512_bf16 or
    amx_bf16 flag; read from /proc/cpuinfo on Linux). False where it cannot be
    told: bf16 autocast is then emulated in float32 and slower than no
    autocast."""
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def resolve(requested: str, *, cuda: bool | None = None, cuda_bf16: bool | None = None,
            cpu_native: bool | None = None) -> tuple[str, str | None]:
    """(the Accelerate ``mixed_precision`` to train in, a note to show when
    it is not plainly what was asked) for ``requested`` on this machine (the
    keyword arguments override what is detected, for tests)."""
    import torch

    if requested not in MODES:
        raise ValueError(f"train.mixed_precision: {requested!r} is not one of {', '.join(MODES)}")
    if cuda is None:
        cuda = torch.cuda.is_available()
    if cuda and cuda_bf16 is None:
        # natively: torch counts emulated bf16 (V100, T4) as supported unless told not to
        try:
            cuda_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # a torch without the argument
            cuda_bf16 = torch.cuda.is_bf16_supported()
    if cpu_native is None and not cuda:
        cpu_native = cpu_bf16_native()
    if requested == "no":
        return "no", None
    if cuda:
        if requested == "auto":
            return ("bf16", None) if cuda_bf16 else (
                "no", "train.mixed_precision=auto: this GPU has no bf16; training in full precision")
        return requested, None
    if requested == "fp16":
        return "no", ("train.mixed_precision=fp16 is a GPU mode: training in full precision on the CPU "
                      "(bf16 or auto use the CPU's bf16 instructions where it has them)")
    if requested == "auto":
        if cpu_native:
            return "bf16", "train.mixed_precision=auto: bf16 autocast (this CPU has bf16 instructions)"
        return "no", None
    if not cpu_native:
        return "bf16", ("train.mixed_precision=bf16: this CPU has no bf16 instructions (avx512_bf16, amx_bf16), "
                        "so bf16 is emulated and usually slower than full precision; auto or no avoid it")
    return "bf16", None


def full_precision(like) -> contextlib.AbstractContextManager:
    """A block computed in float32 inside an enclosing autocast (a bf16
    training step): autocast runs every matrix product in bf16 whatever its
    inputs' dtype, and bf16's 8-bit mantissa rounds cosine similarities near 1
    to about 0.004, which a small temperature turns into reordered neighbours
    or a different contrastive loss. ``like``: a tensor or device whose kind
    (cpu, cuda, ...) the block is for; inputs should be made float32 inside."""
    import torch

    kind = like.device.type if isinstance(like, torch.Tensor) else torch.device(like).type
    if kind not in ("cpu", "cuda", "xpu", "mps", "hpu"):
        return contextlib.nullcontext()
    return torch.autocast(kind, enabled=False)
