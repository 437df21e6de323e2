import torch

from relforge.models.backbone import load_seq2seq


def test_minilm_loads_offline_as_an_encoder_decoder_with_special_tokens():
    model, tok = load_seq2seq("minilm", special_tokens=["<e1>", "</e1>"])
    assert type(model).__name__ == "EncoderDecoderModel"
    assert model.config.decoder_start_token_id == tok.cls_token_id
    assert model.generation_config.eos_token_id == tok.sep_token_id
    n = len(tok)
    assert model.encoder.get_input_embeddings().weight.shape[0] == n
    assert model.decoder.get_output_embeddings().weight.shape[0] == n
    ids = tok("<e1> Bill </e1>", add_special_tokens=False).input_ids
    assert tok.convert_tokens_to_ids("<e1>") in ids and tok.convert_tokens_to_ids("</e1>") in ids


def test_local_path_loads_with_auto_classes(tiny_t5, tmp_path):
    model, tok = tiny_t5
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, ltok = load_seq2seq(str(tmp_path), special_tokens=["<subj>"])
    assert type(loaded).__name__ == "T5ForConditionalGeneration"
    assert loaded.get_input_embeddings().weight.shape[0] >= len(ltok)
    assert ltok.convert_tokens_to_ids("<subj>") == len(ltok) - 1
    with torch.no_grad():
        out = loaded(input_ids=torch.tensor([[5, 1]]), decoder_input_ids=torch.tensor([[0]]))
    assert out.logits.shape[-1] == loaded.config.vocab_size


def test_an_encoder_checkpoint_path_is_warm_started_as_an_encoder_decoder(tiny_bert_dir):
    # a user's own BERT given by path works as the seq2seq backbone, as the default MiniLM does
    model, tok = load_seq2seq(str(tiny_bert_dir), special_tokens=["<e1>"])
    assert type(model).__name__ == "EncoderDecoderModel"
    assert model.config.decoder_start_token_id == tok.cls_token_id
    assert model.generation_config.eos_token_id == tok.sep_token_id
    assert model.decoder.get_output_embeddings().weight.shape[0] == len(tok)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([[tok.cls_token_id, 5, tok.sep_token_id]]),
                    decoder_input_ids=torch.tensor([[tok.cls_token_id]]))
    assert out.logits.shape[-1] == len(tok)


def test_cross_attention_can_start_from_the_decoders_self_attention(tiny_bert_dir, tiny_t5, tmp_path):
    import pytest

    from relforge.config import load_config

    model, tok = load_seq2seq(str(tiny_bert_dir), cross_attention_init="self_attention")
    layers = model.decoder.bert.encoder.layer
    for layer in layers:
        own, cross = layer.attention.state_dict(), layer.crossattention.state_dict()
        assert own.keys() == cross.keys() and all(torch.equal(own[k], cross[k]) for k in own)
    # the default keeps transformers' initialisation: near-zero, unlike the pretrained self-attention
    plain, _ = load_seq2seq(str(tiny_bert_dir))
    layer = plain.decoder.bert.encoder.layer[0]
    assert not torch.equal(layer.crossattention.self.query.weight, layer.attention.self.query.weight)
    # a T5 has its own cross-attention: refused, not ignored
    t5, t5_tok = tiny_t5
    t5.save_pretrained(tmp_path)
    t5_tok.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="own pretrained cross-attention"):
        load_seq2seq(str(tmp_path), cross_attention_init="self_attention")
    # a model setting of every generative model (ETRAG's too); the classifier has no such setting
    for method in ("generative_ce", "cptuning", "etrag"):
        cfg = load_config([], [f"method={method}", "data.dataset=quickstart", "model.cross_attention_init=self_attention"])
        assert cfg.settings("model").cross_attention_init == "self_attention"
    from relforge.config import ConfigError

    with pytest.raises(ConfigError, match="cross_attention_init"):
        load_config([], ["method=marker_classifier", "data.dataset=quickstart", "model.cross_attention_init=random"])
