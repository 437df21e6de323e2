"""Registers the core's decoders (wired to the hook in relforge.builtin)."""
from __future__ import annotations


def register_decoders(register) -> None:
    """Call ``register`` once per built-in decoder."""
    from relforge.decoding.decoders import (
        ConstrainedGenerationDecoder,
        ExactScoringDecoder,
        SureScoringDecoder,
    )

    register(ConstrainedGenerationDecoder)
    register(ExactScoringDecoder)
    register(SureScoringDecoder)
