"""Prompts and the synthetic-example validator on hand-built cases."""
from __future__ import annotations

from relforge.data.example import Entity, Example
from relforge_tkre.knowledge import (PromptSettings, SyntheticValidator, explanation_prompt, parse_synthetic_line,
                                     synthetic_prompt)

TYPES = ["PERSON", "ORGANIZATION", "CITY"]


def example(text, head, tail, htype="PERSON", ttype="ORGANIZATION", rel="org:founded_by"):
    hs, ts = text.index(head), text.index(tail)
    tokens = text.split()
    return Example(id="x", text=text, tokens=tokens,
                   head=Entity(head, hs, hs + len(head), 0, 1, htype),
                   tail=Entity(tail, ts, ts + len(tail), 1, 2, ttype), relations={rel})


def line(rel="org:founded_by", text="Acme Corp was founded by Jane Roe in 1990 .", head="Acme Corp",
         htype="ORGANIZATION", tail="Jane Roe", ttype="PERSON"):
    return (f"Relation: {rel}. Context: {text} Head Entity: {head}. Head Type: {htype}. "
            f"Tail Entity: {tail}. Tail Type: {ttype}.")


def test_prompts_follow_the_paper_and_are_configurable():
    ex = example("Jane Roe founded Acme .", "Acme", "Jane Roe", "ORGANIZATION", "PERSON")
    p = explanation_prompt(ex, "org:founded_by", PromptSettings())
    assert 'subject "Acme" has the relation "org:founded_by" with the object "Jane Roe"' in p
    assert p.endswith("Jane Roe founded Acme .")
    s = synthetic_prompt("org:founded_by", [ex], TYPES, PromptSettings())
    assert "PERSON, ORGANIZATION, CITY" in s and "Head Type: ORGANIZATION. Tail Entity: Jane Roe." in s
    assert s.endswith("Generate 8 more samples like above for the relation 'org:founded_by':")
    untyped = synthetic_prompt("founded by", [ex], None, PromptSettings(per_prompt=3))
    assert "Head Type" not in untyped and "Generate 3 more" in untyped
    custom = PromptSettings(explanation="Why {head} -> {tail} ({relation})? {text}")
    assert explanation_prompt(ex, "r", custom) == "Why Acme -> Jane Roe (r)? Jane Roe founded Acme ."


def test_parse_line_with_numbering_and_lowercase_fields():
    f = parse_synthetic_line("3. relation: org:founded_by. context: A B founded C. head entity: C. "
                             "head type: ORGANIZATION. tail entity: A B. tail type: PERSON.")
    assert f == {"relation": "org:founded_by", "context": "A B founded C.", "head_entity": "C",
                 "head_type": "ORGANIZATION", "tail_entity": "A B", "tail_type": "PERSON"}
    assert parse_synthetic_line("Here are eight more samples:") is None


def test_validator_accepts_a_well_formed_example_with_exact_spans():
    v = SyntheticValidator(TYPES)
    ex = v.check(line(), "org:founded_by", example_id="s1")
    assert ex is not None and ex.relations == frozenset({"org:founded_by"})
    assert ex.text[ex.head.start:ex.head.end] == "Acme Corp" and ex.head.type == "ORGANIZATION"
    assert ex.tokens[ex.tail.token_start:ex.tail.token_end] == ["Jane", "Roe"] and ex.tail.type == "PERSON"
    assert ex.check() == [] and ex.meta["tkre_synthetic"]
    assert v.report.kept == 1 and not v.report.rejected


def test_validator_rejects_and_says_why():
    v = SyntheticValidator(TYPES, demonstrations=["Jane Roe founded Acme ."])
    cases = {
        "wrong relation": line(rel="per:employee_of"),
        "head type not in schema": line(htype="COMPANY"),
        "tail type not in schema": line(ttype="HUMAN"),
        "head entity not in text": line(head="Globex"),
        "tail entity not in text": line(tail="John Doe"),
        "unparseable line": "Sure! Here are some more samples for you.",
        "missing entity type": "Relation: org:founded_by. Context: Acme Corp was set up by Jane Roe . "
                               "Head Entity: Acme Corp. Tail Entity: Jane Roe.",
        "demonstration copied": line(text="Jane Roe founded Acme .", head="Acme"),
    }
    for reason, text in cases.items():
        assert v.check(text, "org:founded_by", example_id="s") is None, reason
        assert v.report.rejected[reason] == 1, (reason, dict(v.report.rejected))
    assert v.check(line(), "org:founded_by", example_id="a") is not None
    assert v.check(line(), "org:founded_by", example_id="b") is None
    assert v.report.rejected["duplicate text"] == 1
    report = v.report.to_dict()
    assert report["kept"] == 1 and report["rejected_total"] == len(cases) + 1
    assert report["samples"]["head entity not in text"][0].startswith("Relation:")


def test_types_compared_loosely_and_entities_case_insensitively():
    v = SyntheticValidator(["STATE_OR_PROVINCE", "PERSON"])
    ex = v.check(line(text="jane roe lives in ohio .", head="Jane Roe", htype="PERSON", tail="Ohio",
                      ttype="state or province"), "org:founded_by", example_id="c")
    assert ex is not None and ex.head.text == "jane roe" and ex.tail.type == "STATE_OR_PROVINCE"


def test_untyped_schema_skips_the_type_check_only():
    v = SyntheticValidator(None)
    ok = "Relation: founded by. Context: Acme was founded by Jane . Head Entity: Acme. Tail Entity: Jane."
    assert v.check(ok, "founded by", example_id="u") is not None
    assert v.check(ok.replace("Jane.", "Bob."), "founded by", example_id="u2") is None


def test_head_and_tail_never_share_a_span():
    v = SyntheticValidator(None)
    ex = v.check("Relation: sibling. Context: Ann met Ann . Head Entity: Ann. Tail Entity: Ann.", "sibling",
                 example_id="s")
    assert ex is not None and ex.head.start != ex.tail.start
