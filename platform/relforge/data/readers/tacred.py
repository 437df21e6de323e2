"""TACRED JSON and its revisions TACREV and Re-TACRED.

TACRED is licensed (LDC), so it is read from the user's copy: point the
``path`` setting (or ``<data_dir>/tacred``) at the folder holding
``train.json``, ``dev.json`` and ``test.json``. Records carry ``id``,
``token``, ``relation``, ``subj_start``, ``subj_end``, ``obj_start``,
``obj_end`` (inclusive ends), ``subj_type`` and ``obj_type``; PTB bracket
escapes (``-lrb-``) are restored to brackets.

TACREV and Re-TACRED are distributed as patches against TACRED. They are
applied here from the patch files the user gives:

* TACREV (Alt et al. 2020): ``dev_patch.json`` and ``test_patch.json``, each a
  JSON list of ``{"id": ..., "relation": ...}`` objects (other fields given
  replace the record's, too); the training set is TACRED's.
* Re-TACRED (Stoica et al. 2021): ``{split}_id2label.json``, a JSON object id
  -> relation for every split. Records whose id the patch lacks are removed
  from the data set (Re-TACRED drops them); they are counted in the report.

A patch id that is not in the data set is an error: it means the patch
belongs to another file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from relforge.data.errors import DataFormatError, ReadReport
from relforge.data.example import Example
from relforge.data.io import load_json
from relforge.data.paths import require_file
from relforge.data.readers.base import FileDataset, check_span, check_tokens, require
from relforge.data.text import entity_from_tokens, restore_ptb, token_char_offsets

TACRED_LABELS = (
    "no_relation",
    "org:alternate_names", "org:city_of_headquarters", "org:country_of_headquarters", "org:dissolved",
    "org:founded", "org:founded_by", "org:member_of", "org:members", "org:number_of_employees/members",
    "org:parents", "org:political/religious_affiliation", "org:shareholders",
    "org:stateorprovince_of_headquarters", "org:subsidiaries", "org:top_members/employees", "org:website",
    "per:age", "per:alternate_names", "per:cause_of_death", "per:charges", "per:children",
    "per:cities_of_residence", "per:city_of_birth", "per:city_of_death", "per:countries_of_residence",
    "per:country_of_birth", "per:country_of_death", "per:date_of_birth", "per:date_of_death",
    "per:employee_of", "per:origin", "per:other_family", "per:parents", "per:religion",
    "per:schools_attended", "per:siblings", "per:spouse", "per:stateorprovince_of_birth",
    "per:stateorprovince_of_death", "per:stateorprovinces_of_residence", "per:title",
)


def parse_tacred_style(rec: Any, path: Path, where: str, *, example_id: str, known: set[str] | None,
                       no_relation: str | None, restore: bool, dataset: str,
                       relation: str | None = None) -> Example:
    """One TACRED-style record (inclusive token ends) as an Example.

    Used by TACRED, TACREV, Re-TACRED and Wiki80, which share the format.
    ``relation`` replaces the record's own (a patch's label).
    """
    tokens = check_tokens(require(rec, "token", list, path, where), path, where)
    if restore:
        tokens = restore_ptb(tokens)
    spans = {}
    for role in ("subj", "obj"):
        s = require(rec, f"{role}_start", int, path, where)
        e = require(rec, f"{role}_end", int, path, where)
        if not (0 <= s < len(tokens)):
            raise DataFormatError(path, f"{s} out of range for {len(tokens)} tokens", record=where,
                                  field=f"{role}_start")
        if not (s <= e < len(tokens)):
            raise DataFormatError(path, f"{e} out of range: the end is inclusive, so it must lie in "
                                  f"[{role}_start={s}, {len(tokens) - 1}]", record=where, field=f"{role}_end")
        check_span(s, e + 1, len(tokens), path, where, f"{role}_start")
        spans[role] = (s, e + 1)
    types = {}
    for role in ("subj", "obj"):
        t = rec.get(f"{role}_type")
        if t is not None and not isinstance(t, str):
            raise DataFormatError(path, f"expected a string, got {t!r}", record=where, field=f"{role}_type")
        types[role] = t
    label = relation if relation is not None else require(rec, "relation", str, path, where)
    if known is not None and label not in known:
        raise DataFormatError(path, f"unknown label {label!r} (known: {', '.join(sorted(known))})",
                              record=where, field="relation")
    text, offsets = token_char_offsets(tokens)
    head = entity_from_tokens(text, offsets, *spans["subj"], type=types["subj"])
    tail = entity_from_tokens(text, offsets, *spans["obj"], type=types["obj"])
    doc_id = rec.get("docid", rec.get("doc_id"))
    return Example(id=example_id, text=text, tokens=tokens, head=head, tail=tail,
                   relations=frozenset() if label == no_relation else frozenset([label]),
                   doc_id=str(doc_id) if doc_id is not None else None,
                   meta={"label": label, "dataset": dataset})


class TacredDataset(FileDataset):
    """TACRED (JSON; licensed, read from the user's copy)."""

    name = "tacred"
    subdir = "tacred"
    no_relation = "no_relation"
    metric = "micro_f1"
    split_files: ClassVar = {
        "train": ("train.json", "TACRED's train.json (LDC2018T24, data/json/train.json)"),
        "dev": ("dev.json", "TACRED's dev.json (LDC2018T24, data/json/dev.json)"),
        "test": ("test.json", "TACRED's test.json (LDC2018T24, data/json/test.json)"),
    }

    class Settings(FileDataset.Settings):
        #: turn PTB escapes (-lrb-, -rrb-, ...) back into brackets
        restore_brackets: bool = True

    def relation_labels(self, data_dir: Path | None) -> list[str]:
        return list(TACRED_LABELS)

    def _known(self, data_dir: Path | None) -> set[str] | None:
        return set(TACRED_LABELS)

    def _patch(self, split: str, data_dir: Path | None, report: ReadReport) -> tuple[dict[str, dict], bool] | None:
        """id -> replacement fields, and whether unpatched records are dropped."""
        return None

    def _read(self, split: str, data_dir: Path | None, report: ReadReport) -> list[Example]:
        path = self.file(split, data_dir)
        report.files.append(str(path))
        patched = self._patch(split, data_dir, report)  # appends the patch file to report.files
        data = load_json(path)
        if not isinstance(data, list):
            raise DataFormatError(path, f"expected a JSON list of records, got {type(data).__name__}")
        if not data:
            raise DataFormatError(path, "the file holds no records")
        patch, drop_unpatched = patched if patched is not None else ({}, False)
        patch_path = Path(report.files[-1])
        known = self._known(data_dir)
        out, seen_ids, applied = [], set(), 0
        for i, rec in enumerate(data):
            where = f"record {i}"
            rid = require(rec, "id", str, path, where)
            where = f"record {i} (id {rid!r})"
            if rid in seen_ids:
                raise DataFormatError(path, f"duplicate id {rid!r}", record=where, field="id")
            seen_ids.add(rid)
            report.records += 1
            relation = None
            if patched is not None:
                if rid in patch:
                    fields = patch[rid]
                    rec = {**rec, **{k: v for k, v in fields.items() if k != "relation"}}
                    relation = fields.get("relation")
                    if relation is not None and known is not None and relation not in known:
                        raise DataFormatError(patch_path, f"unknown label {relation!r}", record=f"id {rid!r}",
                                              field="relation")
                    applied += 1
                elif drop_unpatched:
                    report.skip(f"removed by the {self.name} patch (id not in it)", where)
                    continue
            out.append(parse_tacred_style(rec, path, where, example_id=rid, known=known,
                                          no_relation=self.no_relation,
                                          restore=self.settings.restore_brackets, dataset=self.name,
                                          relation=relation))
        if patched is not None:
            missing = sorted(set(patch) - seen_ids)
            if missing:
                raise DataFormatError(patch_path,
                                      f"{len(missing)} patch id(s) are not in {path}, e.g. {missing[:3]}; "
                                      f"is the patch for another split?", field="id")
            report.notes.append(f"{applied} record(s) patched")
        return out


def _load_patch(path: Path, dataset: str) -> dict[str, dict]:
    data = load_json(path)
    out: dict[str, dict] = {}
    if isinstance(data, dict):  # id -> relation (Re-TACRED), or id -> {fields}
        for rid, v in data.items():
            if isinstance(v, str):
                out[rid] = {"relation": v}
            elif isinstance(v, dict):
                out[rid] = dict(v)
            else:
                raise DataFormatError(path, f"expected a relation string or an object, got {v!r}",
                                      record=f"id {rid!r}")
        return out
    if isinstance(data, list):  # [{id, relation, ...}] (TACREV)
        for i, rec in enumerate(data):
            rid = require(rec, "id", str, path, f"record {i}")
            if rid in out:
                raise DataFormatError(path, f"id {rid!r} patched twice", record=f"record {i}", field="id")
            out[rid] = {k: v for k, v in rec.items() if k != "id"}
            if "relation" in out[rid] and not isinstance(out[rid]["relation"], str):
                raise DataFormatError(path, "expected a string", record=f"record {i}", field="relation")
        return out
    raise DataFormatError(path, f"a {dataset} patch must be a JSON list of {{id, relation}} objects or an "
                                f"object id -> relation, got {type(data).__name__}")


class TacrevDataset(TacredDataset):
    """TACREV: TACRED with the TACREV patch files applied to dev and test."""

    name = "tacrev"
    patch_files: ClassVar[dict[str, str]] = {"dev": "dev_patch.json", "test": "test_patch.json"}

    class Settings(TacredDataset.Settings):
        #: split -> TACREV patch file (relative to the data set's folder, or absolute)
        patches: dict[str, str] = {}

    def _patch_file(self, split: str, data_dir: Path | None) -> Path | None:
        files = {**self.patch_files, **self.settings.patches}
        if split not in files:
            return None
        p = Path(files[split]).expanduser()
        if not p.is_absolute():
            p = self.root(data_dir) / p
        return require_file(p, f"the public {self.name} patch file for the {split} split",
                            dataset=self.name, setting=f"data.dataset.patches.{split}")

    def _patch(self, split, data_dir, report):
        p = self._patch_file(split, data_dir)
        if p is None:
            return None
        report.files.append(str(p))
        return _load_patch(p, self.name), False


class ReTacredDataset(TacrevDataset):
    """Re-TACRED: TACRED relabelled by the Re-TACRED patch files (all splits)."""

    name = "retacred"
    patch_files: ClassVar[dict[str, str]] = {"train": "train_id2label.json", "dev": "dev_id2label.json",
                                             "test": "test_id2label.json"}

    def _patch(self, split, data_dir, report):
        p = self._patch_file(split, data_dir)
        if p is None:
            return None
        report.files.append(str(p))
        return _load_patch(p, self.name), True

    def _known(self, data_dir):
        return None  # Re-TACRED's labels are its patches' labels

    def relation_labels(self, data_dir: Path | None) -> list[str]:
        labels: set[str] = set()
        for split in self.patch_files | self.settings.patches:
            p = self._patch_file(split, data_dir)
            if p is not None:
                labels |= {f["relation"] for f in _load_patch(p, self.name).values() if "relation" in f}
        return sorted(labels)
