"""Raw text with entity mentions: every ordered pair (or the listed pairs) scored."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from relforge.cli import app
from relforge.data.errors import DataFormatError
from relforge.data.mentions import expand_mentions
from relforge.engine.extractor import Extractor
from relforge.engine.pipeline import train_run
from tests.engine.test_pipeline import config

TEXT = "Ada Quill was born in Norport and met Bram Tolle there ."
ENTS = [{"start": 0, "end": 9, "type": "PER"}, {"start": 22, "end": 29, "type": "LOC"},
        {"id": "bram", "start": 38, "end": 48, "type": "PER"}]


def test_every_ordered_pair_or_the_listed_ones():
    pairs = expand_mentions({"id": "s1", "text": TEXT, "entities": ENTS}, "in.jsonl", "line 1", "1")
    assert [p["meta"]["pair"] for p in pairs] == [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
    assert pairs[0]["id"] == "s1/0-1" and pairs[0]["meta"]["record"] == "s1"
    assert pairs[1]["tail"] == {"start": 38, "end": 48, "type": "PER"}  # the entity id is not a span field
    listed = expand_mentions({"text": TEXT, "entities": ENTS, "pairs": [["bram", 1], [1, 0]], "meta": {"src": "x"}},
                             "in.jsonl", "line 4", "4")
    assert [p["id"] for p in listed] == ["4/2-1", "4/1-0"] and listed[0]["meta"] == {"src": "x", "record": "4",
                                                                                      "pair": [2, 1]}


@pytest.mark.parametrize("rec, field, says", [
    ({"text": TEXT, "entities": ENTS[:1]}, "entities", "at least two"),
    ({"text": TEXT, "entities": ENTS, "pairs": [[0, 3]]}, "pairs[0]", "out of range"),
    ({"text": TEXT, "entities": ENTS, "pairs": [[0, "ada"]]}, "pairs[0]", "no entity has id 'ada'"),
    ({"text": TEXT, "entities": ENTS, "pairs": [[1, 1]]}, "pairs[0]", "the same entity"),
    ({"text": TEXT, "entities": ENTS, "head": ENTS[0]}, "head", "either 'entities' or 'head'"),
    ({"text": TEXT, "entities": [ENTS[0], {**ENTS[2], "id": ""}]}, "entities[1].id", "non-empty"),
])
def test_bad_mention_records_name_the_field(rec, field, says):
    with pytest.raises(DataFormatError) as err:
        expand_mentions(rec, "in.jsonl", "line 7", "7")
    assert err.value.field == field and says in str(err.value) and "in.jsonl, line 7" in str(err.value)


def test_predict_scores_the_pairs_of_a_mention_record_like_explicit_pairs(tiny_bert_dir, tmp_path):
    cfg = config("marker_classifier", tiny_bert_dir, "train.max_steps=1", "data.dataset.train_size=16",
                 "tracking.trackers=[]")
    train_run(cfg, output_dir=tmp_path / "run", progress=False)
    ex = Extractor.from_pretrained(tmp_path / "run" / "best", device="cpu")
    rows = ex.predict([{"id": "s1", "text": TEXT, "entities": ENTS}])
    assert [r["pair"] for r in rows] == [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
    assert rows[0]["head"] == "Ada Quill" and rows[0]["tail"] == "Norport" and rows[0]["record"] == "s1"
    plain = ex.predict([{"id": f"p{h}{t}", "text": TEXT, "head": {k: v for k, v in ENTS[h].items() if k != "id"},
                         "tail": {k: v for k, v in ENTS[t].items() if k != "id"}} for h, t in
                        [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]])
    assert [r["scores"] for r in rows] == [r["scores"] for r in plain]
    assert all("pair" not in r for r in plain)
    # the CLI: a mention record among plain ones, and a bad entity named by file, line and entity
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "m", "text": TEXT, "entities": ENTS, "pairs": [[0, 1], ["bram", 0]]}) + "\n"
                   + json.dumps({"id": "q", "text": TEXT, "head": ENTS[0], "tail": ENTS[1]}) + "\n"
                   + json.dumps({"id": "bad", "text": TEXT, "entities": [ENTS[0], {"start": 50, "end": 99}]}) + "\n")
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), "-i", str(src), "-o", "-"])
    assert res.exit_code == 2
    assert f"{src}, line 3 (id 'bad'), field 'entities[1]" in res.output, res.output
    out = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert [r["id"] for r in out] == ["m/0-1", "m/2-0", "q"]
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), "-i", str(src), "-o", str(tmp_path / "o.jsonl"),
                                   "--on-error", "skip"])
    assert res.exit_code == 0 and "3 predictions written" in res.output
    assert "2 of them the entity pairs of 1 record(s) with 'entities'" in res.output


def test_saved_model_and_checkpoint_files_are_readable_like_any_checkpoint(tiny_bert_dir, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        cfg = config("marker_classifier", tiny_bert_dir, "train.max_steps=1", "data.dataset.train_size=16",
                     "tracking.trackers=[]")
        train_run(cfg, output_dir=tmp_path / "run", progress=False)
    finally:
        os.umask(old)
    files = [p for sub in ("best", "checkpoint") for p in (tmp_path / "run" / sub).rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}, [(p.name, oct(p.stat().st_mode)) for p in files]
