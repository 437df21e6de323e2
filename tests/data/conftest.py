"""Helpers for the data-layer tests: writing small made-up files in each format."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def write(path: Path, text: str, *, bom: bool = False, crlf: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if crlf:
        text = text.replace("\n", "\r\n")
    data = text.encode("utf-8")
    if bom:
        data = b"\xef\xbb\xbf" + data
    path.write_bytes(data)
    return path


def write_json(path: Path, obj, **kw) -> Path:
    return write(path, json.dumps(obj, ensure_ascii=False), **kw)


def write_jsonl(path: Path, rows, **kw) -> Path:
    return write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), **kw)


def tacred_record(rid: str, tokens: list[str], subj: tuple[int, int], obj: tuple[int, int], relation: str,
                  subj_type: str = "PERSON", obj_type: str = "CITY") -> dict:
    """A TACRED-format record; subj/obj are inclusive (start, end)."""
    return {"id": rid, "docid": f"doc-{rid}", "relation": relation, "token": tokens,
            "subj_start": subj[0], "subj_end": subj[1], "obj_start": obj[0], "obj_end": obj[1],
            "subj_type": subj_type, "obj_type": obj_type}


@pytest.fixture
def tacred_dir(tmp_path: Path) -> Path:
    """A tiny TACRED-format folder with made-up sentences."""
    root = tmp_path / "tacred"
    toks1 = "Mira Quell was born in Tarnby -lrb- Ostland -rrb- .".split()
    toks2 = "The Velt Group hired Oren Pask last year .".split()
    toks3 = "Oren Pask met Mira Quell in Tarnby .".split()
    train = [tacred_record("t1", toks1, (0, 1), (5, 5), "per:city_of_birth"),
             tacred_record("t2", toks2, (4, 5), (1, 2), "per:employee_of", obj_type="ORGANIZATION"),
             tacred_record("t3", toks3, (0, 1), (3, 4), "no_relation", obj_type="PERSON")]
    dev = [tacred_record("d1", toks1, (0, 1), (7, 7), "per:city_of_birth"),
           tacred_record("d2", toks3, (0, 1), (6, 6), "no_relation")]
    test = [tacred_record("e1", toks2, (4, 5), (1, 2), "no_relation", obj_type="ORGANIZATION"),
            tacred_record("e2", toks1, (0, 1), (5, 5), "per:city_of_birth")]
    for name, rows in (("train", train), ("dev", dev), ("test", test)):
        write_json(root / f"{name}.json", rows)
    return root
