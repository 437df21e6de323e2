"""Registers the core's decoders (wired to the hook in relforge.builtin)."""
from __future__ import annotations


def register_decoders(register) -> None:
    """Call ``register`` once per built-in decoder."""
