"""Registers the core's dataset readers (wired to the hook in relforge.builtin)."""
from __future__ import annotations


def register_datasets(register) -> None:
    """Call ``register`` once per built-in dataset reader."""
    from relforge.data.readers import READERS

    for reader in READERS:
        register(reader)
