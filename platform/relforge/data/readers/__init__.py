"""Dataset readers, one module per file format; all registered as datasets."""
from relforge.data.readers.base import FileDataset
from relforge.data.readers.conll04 import CoNLL04Dataset
from relforge.data.readers.fewrel import FewRelDataset
from relforge.data.readers.jsonl import JsonlDataset
from relforge.data.readers.nyt import NYTDataset, NYTStarDataset
from relforge.data.readers.semeval import SemEvalDataset, SemEvalOpenNREDataset
from relforge.data.readers.tacred import ReTacredDataset, TacredDataset, TacrevDataset
from relforge.data.readers.wiki80 import Wiki80Dataset

#: every built-in reader, in registration order
READERS: tuple[type[FileDataset], ...] = (
    TacredDataset, TacrevDataset, ReTacredDataset, SemEvalDataset, SemEvalOpenNREDataset,
    Wiki80Dataset, FewRelDataset, NYTDataset, NYTStarDataset, CoNLL04Dataset, JsonlDataset,
)

__all__ = ["READERS", "FileDataset", "TacredDataset", "TacrevDataset", "ReTacredDataset", "SemEvalDataset",
           "SemEvalOpenNREDataset", "Wiki80Dataset", "FewRelDataset", "NYTDataset", "NYTStarDataset",
           "CoNLL04Dataset", "JsonlDataset"]
