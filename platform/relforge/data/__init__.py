"""Data layer: the example schema, dataset readers, splits, verbalizers and metrics.

The training engine calls :func:`load_data` (see :mod:`relforge.data.loading`).
"""
from relforge.data.errors import DataError, DataFileNotFoundError, DataFormatError, ReadReport
from relforge.data.example import Entity, Example
from relforge.data.loading import LoadedData, load_data, load_splits
from relforge.data.metrics import episode_accuracy, evaluate, micro_f1, multilabel_prf, semeval_official
from relforge.data.splits import Episode
from relforge.data.verbalizers import Verbalizer, VerbalizerError, build_verbalizer

__all__ = ["Entity", "Example", "DataError", "DataFileNotFoundError", "DataFormatError", "ReadReport",
           "LoadedData", "load_data", "load_splits", "Episode", "Verbalizer", "VerbalizerError",
           "build_verbalizer", "evaluate", "micro_f1", "multilabel_prf", "semeval_official", "episode_accuracy"]
