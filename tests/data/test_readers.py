"""Readers on small made-up files in each format, and their bad-input errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from relforge.data.errors import DataError, DataFileNotFoundError, DataFormatError
from relforge.data.readers import (CoNLL04Dataset, FewRelDataset, JsonlDataset, NYTDataset, ReTacredDataset,
                                   SemEvalDataset, SemEvalOpenNREDataset, TacredDataset, TacrevDataset,
                                   Wiki80Dataset)
from relforge.data.readers.fewrel import FEWREL_VAL_PIDS
from tests.data.conftest import tacred_record, write, write_json, write_jsonl


def assert_sound(examples):
    for ex in examples:
        assert ex.check() == [], (ex.id, ex.check())
        assert ex.tokens[ex.head.token_start:ex.head.token_end] == ex.head.text.split(" ")


# --- TACRED family ---------------------------------------------------------------------

def test_tacred_reads_restores_brackets_and_converts_inclusive_ends(tacred_dir):
    ds = TacredDataset(TacredDataset.Settings(path=str(tacred_dir)))
    train = ds.read("train", None)
    assert [ex.id for ex in train] == ["t1", "t2", "t3"]
    t1 = train[0]
    assert t1.tokens[6] == "(" and t1.tokens[8] == ")"
    assert "(Ostland)" not in t1.text and "( Ostland )" in t1.text
    assert (t1.head.text, t1.head.token_start, t1.head.token_end, t1.head.type) == ("Mira Quell", 0, 2, "PERSON")
    assert t1.tail.text == "Tarnby" and t1.text[t1.tail.start:t1.tail.end] == "Tarnby"
    assert t1.relations == {"per:city_of_birth"} and t1.doc_id == "doc-t1"
    assert train[2].relations == frozenset() and train[2].meta["label"] == "no_relation"
    assert_sound(train)
    assert ds.labels(None)[0] == "no_relation" and len(ds.labels(None)) == 42
    assert ds.reports["train"].records == 3


def test_tacred_brackets_kept_when_asked(tacred_dir):
    ds = TacredDataset(TacredDataset.Settings(path=str(tacred_dir), restore_brackets=False))
    assert "-lrb-" in ds.read("train", None)[0].tokens


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.pop("subj_start"), "subj_start"),
    (lambda r: r.update(obj_end=99), "obj_end"),
    (lambda r: r.update(subj_end=r["subj_start"] - 1), "subj_end"),
    (lambda r: r.update(relation="per:favourite_colour"), "relation"),
    (lambda r: r.update(token="not a list"), "token"),
])
def test_tacred_bad_record_names_file_record_and_field(tmp_path, mutate, field):
    rows = [tacred_record("a", "Ada went home .".split(), (0, 0), (2, 2), "no_relation"),
            tacred_record("b", "Bo met Cy today .".split(), (0, 0), (2, 2), "per:siblings")]
    mutate(rows[1])
    write_json(tmp_path / "train.json", rows)
    with pytest.raises(DataFormatError) as err:
        TacredDataset(TacredDataset.Settings(path=str(tmp_path))).read("train", None)
    msg = str(err.value)
    assert str(tmp_path / "train.json") in msg and "record 1" in msg and f"'{field}'" in msg
    assert err.value.field == field


def test_tacred_malformed_empty_and_missing(tmp_path):
    ds = TacredDataset(TacredDataset.Settings(path=str(tmp_path)))
    write(tmp_path / "train.json", '[{"id": "a",\n "token": [}')
    with pytest.raises(DataFormatError, match=r"train.json, line 2: malformed JSON"):
        ds.read("train", None)
    write(tmp_path / "dev.json", "  \n")
    with pytest.raises(DataFormatError, match="empty"):
        ds.read("dev", None)
    with pytest.raises(DataFileNotFoundError) as err:
        ds.read("test", None)
    assert str(tmp_path / "test.json") in str(err.value) and "TACRED's test.json" in str(err.value)


def test_tacred_bom_and_crlf(tmp_path):
    rows = [tacred_record("a", "Ada lives in Rovik .".split(), (0, 0), (3, 3), "per:cities_of_residence")]
    write(tmp_path / "train.json", json.dumps(rows, indent=1), bom=True, crlf=True)
    ex = TacredDataset(TacredDataset.Settings(path=str(tmp_path))).read("train", None)
    assert ex[0].relations == {"per:cities_of_residence"}


def test_tacrev_applies_patch_to_dev_and_test(tacred_dir):
    write_json(tacred_dir / "dev_patch.json", [{"id": "d2", "relation": "per:cities_of_residence"}])
    write_json(tacred_dir / "test_patch.json", [{"id": "e1", "relation": "org:top_members/employees"}])
    ds = TacrevDataset(TacrevDataset.Settings(path=str(tacred_dir)))
    dev = {ex.id: ex for ex in ds.read("dev", None)}
    assert dev["d2"].relations == {"per:cities_of_residence"} and dev["d1"].relations == {"per:city_of_birth"}
    assert "1 record(s) patched" in ds.reports["dev"].notes
    test = {ex.id: ex for ex in ds.read("test", None)}
    assert test["e1"].relations == {"org:top_members/employees"}
    assert len(ds.read("train", None)) == 3  # TACREV leaves train alone


def test_tacrev_patch_errors(tacred_dir):
    ds = TacrevDataset(TacrevDataset.Settings(path=str(tacred_dir)))
    with pytest.raises(DataFileNotFoundError, match="dev_patch.json"):
        ds.read("dev", None)
    write_json(tacred_dir / "dev_patch.json", [{"id": "zzz", "relation": "per:title"}])
    with pytest.raises(DataFormatError, match="not in .*dev.json"):
        ds.read("dev", None)
    write_json(tacred_dir / "dev_patch.json", [{"id": "d1", "relation": "per:nonsense"}])
    with pytest.raises(DataFormatError, match=r"dev_patch.json, id 'd1', field 'relation': unknown label 'per:nonsense'"):
        ds.read("dev", None)
    other = tacred_dir / "elsewhere" / "my_patch.json"
    write_json(other, [{"id": "d1", "relation": "per:title"}])
    ds = TacrevDataset(TacrevDataset.Settings(path=str(tacred_dir), patches={"dev": str(other)}))
    assert ds.read("dev", None)[0].relations == {"per:title"}


def test_retacred_relabels_and_counts_removed_records(tacred_dir):
    write_json(tacred_dir / "train_id2label.json", {"t1": "per:city_of_birth", "t2": "per:employee_of"})
    write_json(tacred_dir / "dev_id2label.json", {"d1": "per:identity", "d2": "no_relation"})
    write_json(tacred_dir / "test_id2label.json", {"e1": "no_relation", "e2": "per:city_of_birth"})
    ds = ReTacredDataset(ReTacredDataset.Settings(path=str(tacred_dir)))
    train = ds.read("train", None)
    assert [ex.id for ex in train] == ["t1", "t2"]
    rep = ds.reports["train"]
    assert rep.records == 3 and rep.total_skipped == 1 and "removed by the retacred patch" in rep.summary()
    assert ds.read("dev", None)[0].relations == {"per:identity"}
    assert set(ds.labels(None)) == {"no_relation", "per:city_of_birth", "per:employee_of", "per:identity"}


# --- SemEval --------------------------------------------------------------------------------

SEMEVAL_TEXT = (
    '1\t"The <e1>kettle</e1> produced a loud <e2>whistle</e2>."\n'
    "Cause-Effect(e1,e2)\n"
    "Comment: made up\n"
    "\n"
    '2\t"A <e1>scarf</e1> was knitted by my <e2>aunt</e2>\'s neighbour."\n'
    "Product-Producer(e1,e2)\n"
    "Comment:\n"
    "\n"
    '3\t"The <e1>noise</e1> came from the <e2>engine</e2>."\n'
    "Cause-Effect(e2,e1)\n"
    "Comment:\n"
    "\n"
    '4\t"""Hello,"" said the <e1>clerk</e1> at the <e2>desk</e2>."\n'
    "Other\n"
    "Comment:\n"
    "\n"
)


def test_semeval_original_format_crlf_bom(tmp_path):
    write(tmp_path / "TRAIN_FILE.TXT", SEMEVAL_TEXT, bom=True, crlf=True)
    ds = SemEvalDataset(SemEvalDataset.Settings(path=str(tmp_path)))
    ex = ds.read("train", None)
    assert [e.id for e in ex] == ["1", "2", "3", "4"]
    assert ex[0].text == "The kettle produced a loud whistle."
    assert (ex[0].head.text, ex[0].tail.text) == ("kettle", "whistle")
    assert ex[0].relations == {"Cause-Effect(e1,e2)"} and ex[0].meta["comment"] == "made up"
    assert ex[2].relations == {"Cause-Effect(e2,e1)"}  # direction kept in the label; head is always e1
    assert ex[1].tail.text == "aunt" and ex[1].tokens[ex[1].tail.token_end] == "'"
    assert ex[3].relations == frozenset() and ex[3].meta["label"] == "Other"
    assert ex[3].text.startswith('""Hello,""')
    assert_sound(ex)
    assert ds.labels(None)[0] == "Other" and len(ds.labels(None)) == 19


@pytest.mark.parametrize("bad, match", [
    (SEMEVAL_TEXT.replace("Cause-Effect(e2,e1)", "Cause-Effect(e2,e3)"), r"line 10 \(id 3\), field 'relation'"),
    (SEMEVAL_TEXT.replace("<e2>engine</e2>", "engine"), r"line 9 \(id 3\), field 'sentence'"),
    (SEMEVAL_TEXT.replace("Product-Producer(e1,e2)\n", ""), r"line 5 \(id 2\), field 'relation'"),
])
def test_semeval_bad_blocks(tmp_path, bad, match):
    write(tmp_path / "TRAIN_FILE.TXT", bad)
    with pytest.raises(DataFormatError, match=match):
        SemEvalDataset(SemEvalDataset.Settings(path=str(tmp_path))).read("train", None)


def test_semeval_unlabelled_release_with_answer_key(tmp_path):
    blocks = SEMEVAL_TEXT.split("\n\n")
    unlabelled = "\n".join(b.split("\n")[0] for b in blocks if b) + "\n"  # sentence lines only
    write(tmp_path / "TEST_FILE.TXT", unlabelled, crlf=True)
    write(tmp_path / "key.txt", "1\tCause-Effect(e1,e2)\n2\tProduct-Producer(e1,e2)\n3\tCause-Effect(e2,e1)\n"
                                "4\tOther\n", crlf=True)
    ds = SemEvalDataset(SemEvalDataset.Settings(path=str(tmp_path), files={"test": "TEST_FILE.TXT"},
                                                keys={"test": "key.txt"}))
    ex = ds.read("test", None)
    assert [e.meta["label"] for e in ex] == ["Cause-Effect(e1,e2)", "Product-Producer(e1,e2)",
                                              "Cause-Effect(e2,e1)", "Other"]
    write(tmp_path / "key.txt", "1\tCause-Effect\n")
    with pytest.raises(DataFormatError, match=r"key.txt, line 1 \(id 1\), field 'relation': .*undirected"):
        ds.read("test", None)
    write(tmp_path / "key.txt", "1\tOther\n")
    with pytest.raises(DataFormatError, match="id 2 of TEST_FILE.TXT is not in the answer key"):
        ds.read("test", None)


def test_semeval_opennre(tmp_path):
    rows = [{"token": "the kettle produced a loud whistle .".split(), "h": {"name": "kettle", "pos": [1, 2]},
             "t": {"name": "whistle", "pos": [5, 6]}, "relation": "Cause-Effect(e1,e2)"},
            {"token": "a dog in a box .".split(), "h": {"name": "dog", "pos": [1, 2]},
             "t": {"name": "box", "pos": [4, 5]}, "relation": "Other"}]
    write_jsonl(tmp_path / "train.txt", rows)
    ds = SemEvalOpenNREDataset(SemEvalOpenNREDataset.Settings(path=str(tmp_path)))
    ex = ds.read("train", None)
    assert ex[0].head.text == "kettle" and ex[0].relations == {"Cause-Effect(e1,e2)"}
    assert ex[1].relations == frozenset()
    rows[1]["t"]["pos"] = [3, 4]
    write_jsonl(tmp_path / "dev.txt", rows)
    with pytest.raises(DataFormatError, match=r"dev.txt, line 2, field 't.pos': .*'a', but the name is 'box'"):
        ds.read("dev", None)
    rows[1]["t"]["pos"] = [4, 9]
    write_jsonl(tmp_path / "test.txt", rows)
    with pytest.raises(DataFormatError, match=r"line 2, field 't.pos': span \[4, 9\) out of range"):
        ds.read("test", None)


# --- Wiki80 and FewRel ------------------------------------------------------------------------

def wiki_rec(tokens, subj, obj, relation):
    return {"token": tokens, "relation": relation, "subj_start": subj[0], "subj_end": subj[1],
            "obj_start": obj[0], "obj_end": obj[1], "subj_type": "thing", "obj_type": "thing"}


def make_wiki80(root: Path, relations=("spouse", "crosses", "sibling", "architect")):
    write_json(root / "rel2id.json", {r: i for i, r in enumerate(relations)})
    rows = []
    for r in relations:
        for i in range(4):
            rows.append(wiki_rec(f"Zed {i} and Kim Lo of {r}".split(), (0, 1), (3, 4), r))
    write_json(root / "dev.json", rows)
    write_json(root / "test.json", rows[:4])
    return rows


def test_wiki80_inclusive_ends(tmp_path):
    make_wiki80(tmp_path)
    ds = Wiki80Dataset(Wiki80Dataset.Settings(path=str(tmp_path)))
    ex = ds.read("dev", None)
    assert ex[0].head.text == "Zed 0" and ex[0].tail.text == "Kim Lo"
    assert ex[0].relations == {"spouse"} and ds.no_relation is None
    assert ds.labels(None) == ["spouse", "crosses", "sibling", "architect"]
    write_json(tmp_path / "test.json", [wiki_rec("a b".split(), (0, 0), (1, 1), "godparent")])
    with pytest.raises(DataFormatError, match="record 0, field 'relation': unknown label 'godparent'"):
        ds.read("test", None)
    with pytest.raises(DataFileNotFoundError, match="train.json"):
        ds.read("train", None)


def test_fewrel_val_and_leak_free_meta_train(tmp_path, monkeypatch):
    make_wiki80(tmp_path / "wiki80")  # spouse (P26) and crosses (P177) are FewRel val relations
    write_json(tmp_path / "fewrel" / "pid2name.json",
               {"P26": ["spouse", "d"], "P177": ["crosses", "d"], "P3373": ["sibling", "d"],
                "P84": ["architect", "d"]})
    inst = {"tokens": "Ula Ro married Ben Tam in May .".split(), "h": ["ula ro", "Q1", [[0, 1]]],
            "t": ["ben tam", "Q2", [[3, 4], [7]]]}
    write_json(tmp_path / "fewrel" / "val_wiki.json", {"P26": [inst, inst], "P177": [inst]})
    ds = FewRelDataset()
    val = ds.read("val_wiki", tmp_path)
    assert len(val) == 3 and val[0].relations == {"P26"}
    assert val[0].head.text == "Ula Ro" and val[0].tail.text == "Ben Tam"
    assert val[0].meta["t_other_mentions"] == [[7]]
    train = ds.read("train", tmp_path)
    assert {r for ex in train for r in ex.relations} == {"P3373", "P84"}
    assert not {r for ex in train for r in ex.relations} & set(FEWREL_VAL_PIDS)
    rep = ds.reports["train"]
    assert rep.records == 20 and rep.examples == 8
    assert rep.skipped["relation of FewRel val_wiki (left out: leak-free)"] == 8
    assert rep.skipped["duplicate of a record in another Wiki80 file"] == 4
    assert ds.read("val", tmp_path)[0].id == val[0].id  # alias
    monkeypatch.chdir(tmp_path.parent)  # a relative data directory works too
    assert len(FewRelDataset().read("train", Path(tmp_path.name))) == 8
    bad = dict(inst, t=["ben tam", "Q2", [[4, 5]]])
    write_json(tmp_path / "fewrel" / "val_wiki.json", {"P26": [inst, bad]})
    with pytest.raises(DataFormatError, match=r"relation 'P26', instance 1, field 't\[2\]': positions \[4, 5\] "
                                              r"cover 'Tam in', not the mention 'ben tam'"):
        ds.read("val_wiki", tmp_path)


def test_tacred_rejects_boolean_offsets(tmp_path):
    rec = tacred_record("a", "Ada went home .".split(), (0, 0), (2, 2), "no_relation")
    rec["obj_start"] = True
    write_json(tmp_path / "train.json", [rec])
    with pytest.raises(DataFormatError, match="field 'obj_start': expected int, got True"):
        TacredDataset(TacredDataset.Settings(path=str(tmp_path))).read("train", None)


# --- NYT ----------------------------------------------------------------------------------------

def test_nyt_groups_pairs_finds_spans_and_reports_skips(tmp_path):
    write_json(tmp_path / "rel2id.json", [{"0": "/location/location/contains", "1": "/location/country/capital",
                                           "2": "/people/person/place_lived"},
                                          {"/location/location/contains": 0, "/location/country/capital": 1,
                                           "/people/person/place_lived": 2}])
    records = [
        {"text": "Nora Vale moved to Quelport , Ostland , last spring .",
         "triple_list": [["Ostland", "/location/country/capital", "Quelport"],
                         ["Ostland", "/location/location/contains", "Quelport"],
                         ["Nora Vale", "/people/person/place_lived", "Quelport"],
                         ["Ostland", "/location/country/capital", "Quelport"]]},
        {"text": "Tourists flock to Cancun , Ostland .",
         "triple_list": [["Ostland", "/location/location/contains", "Cancún"]]},
        {"text": "Nothing about Brill here .",
         "triple_list": [["Ostland", "/location/location/contains", "Brill"]]},
    ]
    write_json(tmp_path / "test_triples.json", records)
    ds = NYTDataset(NYTDataset.Settings(path=str(tmp_path)))
    ex = ds.read("test", None)
    assert len(ex) == 3
    assert ex[0].relations == {"/location/country/capital", "/location/location/contains"}
    assert (ex[0].head.text, ex[0].tail.text) == ("Ostland", "Quelport")
    assert (ex[1].head.token_start, ex[1].head.token_end) == (0, 2)
    assert ex[2].tail.text == "Cancun" and ex[2].meta["accent_folded"]
    rep = ds.reports["test"]
    assert rep.records == 3 and rep.skipped == {"entity not found in the sentence": 1}
    assert rep.notes == ["1 repeated triple(s) merged (a pair's relations are a set)"]
    assert "'Ostland'" in rep.skipped_examples["entity not found in the sentence"][0]
    assert_sound(ex)
    na = NYTDataset(NYTDataset.Settings(path=str(tmp_path), na_pairs=True))
    ex_na = na.read("test", None)
    na_pairs = [(e.head.text, e.tail.text) for e in ex_na if not e.relations]
    assert set(na_pairs) == {("Quelport", "Ostland"), ("Quelport", "Nora Vale"), ("Ostland", "Nora Vale"),
                             ("Nora Vale", "Ostland"), ("Cancun", "Ostland")}
    assert len(na_pairs) == len(set(na_pairs)) == 5
    assert na.labels(None)[0] == "NA" and ds.labels(None)[0] != "NA"
    write_json(tmp_path / "val_triples.json", [{"text": "a b", "triple_list": [["a", "/x/y/z", "b"]]}])
    with pytest.raises(DataFormatError, match=r"record 0, field 'triple_list\[0\]\[1\]': unknown label"):
        ds.read("dev", None)


# --- CoNLL04 -------------------------------------------------------------------------------------

def test_conll04_spert(tmp_path):
    rows = [{"tokens": "Pim Ro works for Zeta Corp in Veld .".split(),
             "entities": [{"type": "Peop", "start": 0, "end": 2}, {"type": "Org", "start": 4, "end": 6},
                          {"type": "Loc", "start": 7, "end": 8}],
             "relations": [{"type": "Work_For", "head": 0, "tail": 1}, {"type": "Live_In", "head": 0, "tail": 2},
                           {"type": "OrgBased_In", "head": 1, "tail": 2}, {"type": "Live_In", "head": 0, "tail": 1}],
             "orig_id": 7}]
    write_json(tmp_path / "train_triples.json", rows)
    ds = CoNLL04Dataset(CoNLL04Dataset.Settings(path=str(tmp_path)))
    ex = ds.read("train", None)
    assert len(ex) == 3 and ex[0].relations == {"Work_For", "Live_In"}
    assert ex[0].head.text == "Pim Ro" and ex[0].tail.text == "Zeta Corp" and ex[0].tail.type == "Org"
    assert ex[0].meta["orig_id"] == 7
    assert len(CoNLL04Dataset(CoNLL04Dataset.Settings(path=str(tmp_path), na_pairs=True)).read("train", None)) == 6
    rows[0]["relations"][0]["tail"] = 5
    write_json(tmp_path / "dev_triples.json", rows)
    with pytest.raises(DataFormatError, match=r"record 0 \(orig_id 7\), field 'relations\[0\].tail'"):
        ds.read("dev", None)


# --- generic JSON lines ----------------------------------------------------------------------------

def test_jsonl_char_token_and_both_offsets(tmp_path):
    rows = [
        {"id": "a", "text": "Ada Quill was born in Lunport.", "head": {"start": 0, "end": 9, "type": "PER"},
         "tail": {"start": 22, "end": 29}, "relations": ["born_in"]},
        {"tokens": ["Bo", "Kay", "visited", "Rill", "."], "head": {"token_start": 0, "token_end": 2},
         "tail": {"token_start": 3, "token_end": 4}, "relation": None},
        {"text": "Cy  Dunn met Eve.", "tokens": ["Cy", "Dunn", "met", "Eve", "."],
         "head": {"token_start": 0, "token_end": 2, "start": 0, "end": 8, "text": "Cy  Dunn"},
         "tail": {"token_start": 3, "token_end": 4}, "relations": ["knows", "met"], "meta": {"src": "x"}},
    ]
    write_jsonl(tmp_path / "train.jsonl", rows, crlf=True, bom=True)
    ds = JsonlDataset(JsonlDataset.Settings(path=str(tmp_path)))
    ex = ds.read("train", None)
    assert ex[0].tokens == ["Ada", "Quill", "was", "born", "in", "Lunport", "."]
    assert (ex[0].head.token_start, ex[0].head.token_end, ex[0].head.type) == (0, 2, "PER")
    assert ex[0].tail.text == "Lunport" and ex[1].id == "train-2" and ex[1].relations == frozenset()
    assert ex[1].text == "Bo Kay visited Rill ." and ex[1].head.text == "Bo Kay"
    assert ex[2].head.text == "Cy  Dunn" and ex[2].relations == {"knows", "met"} and ex[2].meta == {"src": "x"}
    assert_sound(ex[:2])
    # issue 21: a pair without relations means "no relation", a label of the label space by default
    assert ds.labels(None) == ["no_relation", "born_in", "knows", "met"]
    # and a label space without one cannot express that pair: refused at load time, naming the line
    strict = JsonlDataset(JsonlDataset.Settings(path=str(tmp_path), no_relation=None))
    with pytest.raises(DataFormatError, match=r"line 2.*no_relation: null.*cannot express it"):
        strict.read("train", None)


@pytest.mark.parametrize("row, match", [
    ({"text": "A b.", "head": {"start": 0, "end": 1}, "tail": {"start": 2, "end": 3}, "relaton": ["x"]},
     r"line 2, field 'relaton': unknown key"),
    ({"text": "A b.", "head": {"start": 0, "end": 1}, "tail": {"start": 2, "end": 3}},
     r"line 2, field 'relations': missing field"),
    ({"text": "A b.", "head": {"start": 0, "end": 1}, "tail": {"start": 2, "end": 9}, "relations": []},
     r"line 2, field 'tail.end': character span \[2, 9\) out of range"),
    ({"text": "A b.", "head": {"start": 0, "end": 1, "text": "B"}, "tail": {"start": 2, "end": 3},
      "relations": []}, r"line 2, field 'head.text': the span covers 'A', not 'B'"),
    ({"text": "Abc d.", "head": {"start": 0, "end": 2}, "tail": {"start": 4, "end": 5}, "relations": [],
      "tokens": ["Abc", "d", "."]}, r"field 'head.start': .* token boundaries"),
    ({"tokens": ["A", "b"], "head": {"token_start": 0, "token_end": 1}, "tail": {"token_start": 1},
      "relations": []}, r"field 'tail.token_start': give both"),
])
def test_jsonl_errors_name_line_and_field(tmp_path, row, match):
    good = {"text": "A b.", "head": {"start": 0, "end": 1}, "tail": {"start": 2, "end": 3}, "relations": []}
    write_jsonl(tmp_path / "train.jsonl", [good, row])
    with pytest.raises(DataFormatError, match=match) as err:
        JsonlDataset(JsonlDataset.Settings(path=str(tmp_path))).read("train", None)
    assert str(tmp_path / "train.jsonl") in str(err.value)


def test_jsonl_labels_file_no_relation_and_malformed_line(tmp_path):
    write_json(tmp_path / "labels.json", ["none", "likes"])
    rows = [{"text": "A b.", "head": {"start": 0, "end": 1}, "tail": {"start": 2, "end": 3}, "relation": "none"},
            {"text": "A b.", "head": {"start": 0, "end": 1}, "tail": {"start": 2, "end": 3}, "relation": "hates"}]
    write_jsonl(tmp_path / "train.jsonl", rows)
    ds = JsonlDataset(JsonlDataset.Settings(path=str(tmp_path), no_relation="none"))
    with pytest.raises(DataFormatError, match=r"line 2, field 'relation': unknown label 'hates'"):
        ds.read("train", None)
    write_jsonl(tmp_path / "train.jsonl", rows[:1])
    assert ds.read("train", None)[0].relations == frozenset()
    assert ds.labels(None) == ["none", "likes"]
    write(tmp_path / "dev.jsonl", json.dumps(rows[0]) + "\n\n{broken\n")
    with pytest.raises(DataFormatError, match=r"dev.jsonl, line 3: malformed JSON"):
        ds.read("dev", None)
    write(tmp_path / "test.jsonl", "")
    with pytest.raises(DataFormatError, match=r"test.jsonl: the file is empty"):
        ds.read("test", None)


# --- data directory ------------------------------------------------------------------------------

def test_data_dir_from_env_and_errors(tmp_path, monkeypatch, tacred_dir):
    monkeypatch.delenv("RELFORGE_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="RELFORGE_DATA_DIR"):
        TacredDataset().read("train", None)
    monkeypatch.setenv("RELFORGE_DATA_DIR", str(tacred_dir.parent))
    assert len(TacredDataset().read("train", None)) == 3
    assert len(TacredDataset().read("train", tacred_dir.parent)) == 3
    monkeypatch.setenv("RELFORGE_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="does not exist"):
        TacredDataset().read("train", None)
    with pytest.raises(DataError, match="has no split 'validation'"):
        TacredDataset().read("validation", tacred_dir.parent)


def test_generic_jsonl_round_trip_of_any_reader(tacred_dir, tmp_path):
    from relforge.data.export import write_examples_jsonl

    original = TacredDataset(TacredDataset.Settings(path=str(tacred_dir))).read("train", None)
    write_examples_jsonl(tmp_path / "rt" / "train.jsonl", original)
    back = JsonlDataset(JsonlDataset.Settings(path=str(tmp_path / "rt"), files={"train": "train.jsonl"})) \
        .read("train", None)
    for a, b in zip(original, back, strict=True):
        assert (a.id, a.text, a.tokens, a.head, a.tail, a.relations, a.doc_id) == \
               (b.id, b.text, b.tokens, b.head, b.tail, b.relations, b.doc_id)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_word = st.text(alphabet=st.characters(whitelist_categories=("L", "N", "P")), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(st.lists(_word, min_size=2, max_size=12), st.data())
def test_jsonl_token_offsets_property(tokens, data):
    import tempfile

    n = len(tokens)
    hs = data.draw(st.integers(0, n - 1))
    he = data.draw(st.integers(hs + 1, n))
    ts = data.draw(st.integers(0, n - 1))
    te = data.draw(st.integers(ts + 1, n))
    row = {"tokens": tokens, "head": {"token_start": hs, "token_end": he},
           "tail": {"token_start": ts, "token_end": te}, "relations": ["r"]}
    with tempfile.TemporaryDirectory() as d:
        write_jsonl(Path(d) / "train.jsonl", [row])
        ex = JsonlDataset(JsonlDataset.Settings(path=d, files={"train": "train.jsonl"})).read("train", None)[0]
    assert ex.check() == []
    assert ex.head.text == " ".join(tokens[hs:he]) and ex.tail.text == " ".join(tokens[ts:te])
