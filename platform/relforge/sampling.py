"""The ``data.sampling`` schema: K-shot, ratio and episode sampling of splits.

Part of the configuration layer (validated when a configuration is loaded);
the data layer (:mod:`relforge.data.loading`) interprets it. A leaf module.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from relforge.validation import ConfigError


class SamplingError(ConfigError):
    """An invalid ``data.sampling``; the message names the key path."""


class SamplingBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: fraction of train carved off as dev when the data set has no dev split
    dev_ratio: float = Field(0.1, gt=0, lt=1)
    dev_seed: int | None = None
    #: evaluate on at most this many dev examples (a seeded sample, stratified
    #: by label), to keep per-epoch model selection affordable on a CPU
    dev_size: int | None = Field(None, gt=0)
    #: score test on a seeded uniform sample of this many examples instead of
    #: the whole split (CPU budgets; recorded in the run's notes and tags --
    #: not the published protocol)
    test_size: int | None = Field(None, gt=0)
    #: seed of the test sample (the sampling seed, else 42)
    test_seed: int | None = None


class NoSampling(SamplingBase):
    kind: Literal["none"] = "none"


class KShotSampling(SamplingBase):
    kind: Literal["kshot"]
    k: int = Field(gt=0)
    seed: int
    #: use the data set's published K-shot files for (k, seed) when present
    use_published: bool = True


class RatioSampling(SamplingBase):
    kind: Literal["ratio"]
    ratio: float = Field(gt=0, le=1)
    seed: int
    stratified: bool = False


class EpisodeSampling(SamplingBase):
    kind: Literal["episodes"]
    n: int = Field(5, gt=0)
    k: int = Field(1, gt=0)
    q: int = Field(1, gt=0)
    num_episodes: int = Field(1000, gt=0)
    seed: int = 42


SamplingConfig = Annotated[Union[NoSampling, KShotSampling, RatioSampling, EpisodeSampling],
                           Field(discriminator="kind")]
_ADAPTER: TypeAdapter = TypeAdapter(SamplingConfig)


def parse_sampling(sampling: dict[str, Any] | None) -> SamplingBase:
    """Validate ``data.sampling``; errors name the key path."""
    data = dict(sampling or {})
    data.setdefault("kind", "none")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"][1:] if not str(p).startswith("function"))
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"data.sampling{'.' + loc if loc else ''}: {msg}")
        raise SamplingError("invalid data.sampling:\n  " + "\n  ".join(lines)) from None
