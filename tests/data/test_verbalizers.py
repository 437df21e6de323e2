"""Default verbalizers, SuRE-style templates, overrides and clashes."""
from __future__ import annotations

import pytest

from relforge.data.readers import (CoNLL04Dataset, JsonlDataset, NYTDataset, SemEvalDataset, TacredDataset,
                                   Wiki80Dataset)
from relforge.data.readers.semeval import SEMEVAL_LABELS
from relforge.data.readers.tacred import TACRED_LABELS
from relforge.data.relation_templates import NYT_TEMPLATES, WIKI80_TEMPLATES
from relforge.data.verbalizers import Verbalizer, VerbalizerError, build_verbalizer
from tests.data.conftest import write


def test_tacred_defaults_are_unique_words_and_templates():
    v = build_verbalizer(TacredDataset(), TACRED_LABELS)
    assert v["per:city_of_birth"] == "person city of birth"
    assert v["org:stateorprovince_of_headquarters"] == "organization state or province of headquarters"
    assert v["org:top_members/employees"] == "organization top members or employees"
    assert v["no_relation"] == "no relation"
    assert v.render("per:city_of_birth", "Ada", "Rovik") == "Ada was born in the city Rovik"
    assert v.label_for("Person  City of Birth") == "per:city_of_birth"


def test_semeval_direction_in_words_and_templates():
    v = build_verbalizer(SemEvalDataset(), SEMEVAL_LABELS)
    assert v["Cause-Effect(e1,e2)"] == "cause effect" and v["Cause-Effect(e2,e1)"] == "effect cause"
    assert v.render("Cause-Effect(e1,e2)", "fire", "smoke") == "fire causes smoke"
    assert v.render("Cause-Effect(e2,e1)", "smoke", "fire") == "fire causes smoke"
    assert v["Other"] == "other"


def test_nyt_wiki80_conll04_generic_defaults():
    nyt_labels = [lab for lab in NYT_TEMPLATES if lab != "NA"]
    v = build_verbalizer(NYTDataset(), nyt_labels)
    assert v["/people/person/place_of_birth"] == "person place of birth"
    assert v.render("/location/country/capital", "Ostland", "Quelport") == "Quelport is the capital of Ostland"
    w = build_verbalizer(Wiki80Dataset(), list(WIKI80_TEMPLATES))
    assert w["mother"] == "mother" and "{subj}" in w.templates["mother"]
    c = build_verbalizer(CoNLL04Dataset(), ["Kill", "OrgBased_In"])
    assert c["OrgBased_In"] == "organization based in"
    g = build_verbalizer(JsonlDataset(), ["born_in", "works-for"])
    assert g["works-for"] == "works for"
    assert g.render("born_in", "A", "B") == "the relation between A and B is born in"


def test_override_file_yaml_and_json(tmp_path):
    f = write(tmp_path / "v.yaml", "labels:\n  per:city_of_birth: birth city\n"
                                   "templates:\n  per:city_of_birth: '{subj} was born in {obj}'\n")
    v = build_verbalizer(TacredDataset(), TACRED_LABELS, f)
    assert v["per:city_of_birth"] == "birth city" and v.render("per:city_of_birth", "A", "B") == "A was born in B"
    assert v.sources["per:city_of_birth"] == str(f)
    flat = write(tmp_path / "v.json", '{"per:age": "age of person"}', bom=True, crlf=True)
    assert build_verbalizer(TacredDataset(), TACRED_LABELS, flat)["per:age"] == "age of person"


@pytest.mark.parametrize("content, match", [
    ("labels:\n  per:age: person city of birth\n", r"clash: labels 'per:age' and 'per:city_of_birth'|"
                                                    r"clash: labels 'per:city_of_birth' and 'per:age'"),
    ("labels:\n  per:favourite_colour: colour\n", r"unknown label\(s\) \['per:favourite_colour'\]"),
    ("templates:\n  per:age: '{subj} is old'\n", r"exactly the fields \{subj\} and \{obj\}"),
    ("templates:\n  per:age: '{subj} is {obj} years old {when}'\n", r"found \['obj', 'subj', 'when'\]"),
    ("labels: [1, 2]\n", r"`labels` must be a mapping"),
    ("labels:\n  per:age: ''\n", r"expected a non-empty string"),
    ("", r"the file is empty"),
    ("labels: {a: [\n", r"malformed YAML"),
])
def test_override_errors(tmp_path, content, match):
    f = write(tmp_path / "v.yaml", content)
    with pytest.raises(VerbalizerError, match=match):
        build_verbalizer(TacredDataset(), TACRED_LABELS, f)


def test_missing_override_and_default_clash(tmp_path):
    with pytest.raises(VerbalizerError, match="not found"):
        build_verbalizer(TacredDataset(), TACRED_LABELS, tmp_path / "nope.yaml")
    with pytest.raises(VerbalizerError, match="clash"):  # 'born_in' and 'born-in' read the same
        build_verbalizer(JsonlDataset(), ["born_in", "born-in"])
    with pytest.raises(VerbalizerError, match="clash"):
        Verbalizer(labels=["a", "b"], words={"a": "x", "b": "y"}, templates={"a": "{subj} {obj}", "b": "{subj}  {obj}"})
