"""Data layer: the example schema, dataset readers, splits, verbalizers and metrics."""
from relforge.data.example import Entity, Example

__all__ = ["Entity", "Example"]
