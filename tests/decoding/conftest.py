import os
from pathlib import Path

import pytest
import torch

T5_TOKENIZER = Path(os.environ.get("RELFORGE_T5_TOKENIZER", Path(__file__).resolve().parents[3] / "shared" / "models" / "t5-tokenizer"))

RELATIONS = ["founded by", "founder", "founder of", "city of birth", "city of death", "country of birth",
             "employee of", "member of", "no relation", "parents", "children", "spouse"]
SOURCES = ["Bill Gates founded Microsoft in Albuquerque.", "Marie Curie was born in Warsaw.",
           "Obama is married to Michelle.", "Ada Lovelace was the daughter of Lord Byron."]


@pytest.fixture(scope="session")
def minilm():
    from relforge.models.backbone import load_seq2seq

    torch.manual_seed(0)
    model, tok = load_seq2seq("minilm")
    return model.eval(), tok


@pytest.fixture(scope="session")
def tiny_t5():
    """A small randomly initialised T5 with the real T5 tokenizer."""
    if not T5_TOKENIZER.is_dir():
        pytest.skip(f"T5 tokenizer not found at {T5_TOKENIZER}")
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(str(T5_TOKENIZER), local_files_only=True)
    cfg = T5Config.from_pretrained(str(T5_TOKENIZER), local_files_only=True, d_model=32, d_ff=64, d_kv=16,
                                   num_layers=2, num_decoder_layers=2, num_heads=2)
    torch.manual_seed(0)
    return T5ForConditionalGeneration(cfg).eval(), tok


@pytest.fixture(params=["tiny_t5", "minilm"])
def seq2seq(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small models run faster on one thread, and far faster when the other
    core is busy (OpenMP barriers then stall)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
