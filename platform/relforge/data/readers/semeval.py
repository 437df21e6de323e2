"""SemEval-2010 Task 8, in its original release format and as OpenNRE JSON lines.

Original release (``TRAIN_FILE.TXT``, ``TEST_FILE_FULL.TXT``): blocks of
``id<TAB>"sentence with <e1>..</e1> and <e2>..</e2>"``, the label line, a
``Comment:`` line and a blank line; CRLF line ends. A file without label
lines (the test release's ``TEST_FILE.TXT``) takes its labels from an answer
key (setting ``keys``); the key must carry directed labels. Labels are the 9
relations with their direction, ``Cause-Effect(e1,e2)`` meaning e1 is the
cause, plus ``Other`` (no relation). The head is always e1 and the tail e2;
the direction lives in the label, as in the official scorer.

OpenNRE (``opennre_format/{train,dev,test}.txt``): one JSON object a line,
``{token, h: {name, pos}, t: {name, pos}, relation}`` with exclusive ``pos``
ends; ``h`` is e1 and ``t`` e2.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from relforge.data.errors import DataFormatError, ReadReport
from relforge.data.example import Entity, Example
from relforge.data.io import iter_jsonl, load_label_index, read_lines
from relforge.data.paths import require_file
from relforge.data.readers.base import FileDataset, check_span, check_tokens, require
from relforge.data.text import (char_to_token_span, entity_from_tokens, token_char_offsets,
                                tokenize_with_offsets)

SEMEVAL_RELATIONS = ("Cause-Effect", "Component-Whole", "Content-Container", "Entity-Destination",
                     "Entity-Origin", "Instrument-Agency", "Member-Collection", "Message-Topic",
                     "Product-Producer")
SEMEVAL_OTHER = "Other"
SEMEVAL_LABELS = (SEMEVAL_OTHER,) + tuple(f"{r}({d})" for r in SEMEVAL_RELATIONS for d in ("e1,e2", "e2,e1"))

_SENTENCE = re.compile(r"^(\d+)\t(.*)$")
_MARKERS = re.compile(r"</?e[12]>")


def parse_marked_sentence(marked: str, path: Path, where: str) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """Text without the ``<e1>``/``<e2>`` markers and the two character spans."""
    found = _MARKERS.findall(marked)
    if sorted(found) != sorted(["<e1>", "</e1>", "<e2>", "</e2>"]):
        raise DataFormatError(path, f"expected each of <e1>, </e1>, <e2>, </e2> exactly once, found {found}",
                              record=where, field="sentence")
    text_parts, spans, open_at, pos = [], {}, {}, 0
    for m in _MARKERS.finditer(marked):
        text_parts.append(marked[pos:m.start()])
        cur = sum(len(p) for p in text_parts)
        tag = m.group()
        if tag.startswith("</"):
            name = tag[2:-1]
            if name not in open_at:
                raise DataFormatError(path, f"{tag} before <{name}>", record=where, field="sentence")
            spans[name] = (open_at[name], cur)
        else:
            open_at[tag[1:-1]] = cur
        pos = m.end()
    text_parts.append(marked[pos:])
    text = "".join(text_parts)
    for name in ("e1", "e2"):
        s, e = spans[name]
        # the release sometimes has spaces inside the tags; an entity is its stripped text
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s >= e:
            raise DataFormatError(path, f"entity <{name}> is empty", record=where, field="sentence")
        spans[name] = (s, e)
    (a1, b1), (a2, b2) = spans["e1"], spans["e2"]
    if not (b1 <= a2 or b2 <= a1):
        raise DataFormatError(path, "e1 and e2 overlap", record=where, field="sentence")
    return text, spans["e1"], spans["e2"]


class SemEvalDataset(FileDataset):
    """SemEval-2010 Task 8, original release format (TRAIN_FILE.TXT / TEST_FILE_FULL.TXT)."""

    name = "semeval"
    subdir = "semeval2010_task8"
    no_relation = SEMEVAL_OTHER
    metric = "semeval"
    split_files: ClassVar = {
        "train": ("TRAIN_FILE.TXT", "SemEval-2010 Task 8 TRAIN_FILE.TXT (8,000 sentences, 4-line blocks)"),
        "test": ("TEST_FILE_FULL.TXT", "SemEval-2010 Task 8 TEST_FILE_FULL.TXT (2,717 sentences with labels)"),
    }

    class Settings(FileDataset.Settings):
        #: split -> answer key (``id<TAB>label``) for files without label lines, such as the test
        #: release's TEST_FILE.TXT; relative to the data set's folder, or absolute
        keys: dict[str, str] = {}

    def relation_labels(self, data_dir: Path | None) -> list[str]:
        return list(SEMEVAL_LABELS[1:])

    def _key(self, split: str, data_dir: Path | None, report: ReadReport) -> dict[str, str] | None:
        if split not in self.settings.keys:
            return None
        p = Path(self.settings.keys[split]).expanduser()
        if not p.is_absolute():
            p = self.root(data_dir) / p
        p = require_file(p, "a SemEval answer key: lines 'id<TAB>label' with directed labels",
                         dataset=self.name, setting=f"data.dataset.keys.{split}")
        report.files.append(str(p))
        key: dict[str, str] = {}
        known = set(SEMEVAL_LABELS)
        for n, line in enumerate(read_lines(p), start=1):
            if not line.strip():
                continue
            sid, tab, label = line.strip().partition("\t")
            if not tab or not sid.isdigit():
                raise DataFormatError(p, f"expected 'id<TAB>label', got {line[:60]!r}", record=f"line {n}")
            if label not in known:
                hint = " (an undirected label: this key cannot give the direction)" \
                    if label in SEMEVAL_RELATIONS else ""
                raise DataFormatError(p, f"unknown label {label!r}{hint}", record=f"line {n} (id {sid})",
                                      field="relation")
            if sid in key:
                raise DataFormatError(p, f"duplicate id {sid}", record=f"line {n}", field="id")
            key[sid] = label
        return key

    def _read(self, split: str, data_dir: Path | None, report: ReadReport) -> list[Example]:
        path = self.file(split, data_dir)
        report.files.append(str(path))
        key = self._key(split, data_dir, report)
        lines = read_lines(path)
        known = set(SEMEVAL_LABELS)
        out, seen, i = [], set(), 0
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                i += 1
                continue
            where = f"line {i + 1}"
            m = _SENTENCE.match(line.strip("\ufeff"))
            if not m:
                raise DataFormatError(path, f"expected 'id<TAB>\"sentence\"', got {line[:60]!r}", record=where,
                                      field="sentence")
            sid, quoted = m.group(1), m.group(2).strip()
            where = f"line {i + 1} (id {sid})"
            if sid in seen:
                raise DataFormatError(path, f"duplicate id {sid}", record=where, field="id")
            seen.add(sid)
            if len(quoted) >= 2 and quoted[0] == '"' and quoted[-1] == '"':
                quoted = quoted[1:-1]
            label_line = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if not label_line or _SENTENCE.match(label_line) or label_line.startswith("Comment"):
                if key is None:
                    raise DataFormatError(path, "the label line after the sentence is missing (for a file "
                                          "without labels, give its answer key in data.dataset.keys)",
                                          record=where, field="relation")
                if sid not in key:
                    raise DataFormatError(report.files[-1], f"id {sid} of {path.name} is not in the answer key",
                                          field="id")
                label = key[sid]
                i += 1
            else:
                label = self._check_label(label_line, known, path, f"line {i + 2} (id {sid})", "relation")
                if key is not None and key.get(sid, label) != label:
                    raise DataFormatError(path, f"label {label!r} disagrees with the answer key's {key[sid]!r}",
                                          record=f"line {i + 2} (id {sid})", field="relation")
                i += 2
            comment = None
            if i < len(lines) and lines[i].startswith("Comment"):
                comment = lines[i].partition(":")[2].strip() or None
                i += 1
            report.records += 1
            text, e1, e2 = parse_marked_sentence(quoted, path, where)
            tokens, offsets = tokenize_with_offsets(text, [*e1, *e2])
            ents = []
            for name, (s, e) in (("e1", e1), ("e2", e2)):
                span = char_to_token_span(offsets, s, e)
                if span is None:  # cannot happen: boundaries are forced
                    raise DataFormatError(path, f"{name} does not align with tokens", record=where,
                                          field="sentence")
                ents.append(Entity(text=text[s:e], start=s, end=e, token_start=span[0], token_end=span[1]))
            meta = {"label": label, "dataset": self.name, "semeval_id": int(sid)}
            if comment:
                meta["comment"] = comment
            out.append(Example(id=sid, text=text, tokens=tokens, head=ents[0], tail=ents[1],
                               relations=self._relations(label), sent_id=sid, meta=meta))
        return out


class SemEvalOpenNREDataset(FileDataset):
    """SemEval-2010 Task 8 in OpenNRE JSON lines (train 6,507 / dev 1,493 / test 2,717)."""

    name = "semeval_opennre"
    subdir = "semeval2010_task8/opennre_format"
    no_relation = SEMEVAL_OTHER
    metric = "semeval"
    split_files: ClassVar = {
        "train": ("train.txt", "OpenNRE-format JSON lines {token, h: {name, pos}, t: {name, pos}, relation}"),
        "dev": ("dev.txt", "OpenNRE-format JSON lines {token, h: {name, pos}, t: {name, pos}, relation}"),
        "test": ("test.txt", "OpenNRE-format JSON lines {token, h: {name, pos}, t: {name, pos}, relation}"),
    }

    def relation_labels(self, data_dir: Path | None) -> list[str]:
        p = self.root(data_dir) / "rel2id.json"
        if p.is_file():
            return load_label_index(p, "label -> id")
        return list(SEMEVAL_LABELS[1:])

    def _read(self, split: str, data_dir: Path | None, report: ReadReport) -> list[Example]:
        path = self.file(split, data_dir)
        report.files.append(str(path))
        known = set(self.labels(data_dir))
        out = []
        for lineno, rec in iter_jsonl(path):
            where = f"line {lineno}"
            report.records += 1
            tokens = check_tokens(require(rec, "token", list, path, where), path, where)
            text, offsets = token_char_offsets(tokens)
            ents = []
            for role in ("h", "t"):
                ent = require(rec, role, dict, path, where)
                pos = ent.get("pos")
                if (not isinstance(pos, list) or len(pos) != 2 or not all(isinstance(p, int) for p in pos)):
                    raise DataFormatError(path, f"expected [start, end], got {pos!r}", record=where,
                                          field=f"{role}.pos")
                check_span(pos[0], pos[1], len(tokens), path, where, f"{role}.pos")
                e = entity_from_tokens(text, offsets, pos[0], pos[1])
                name = ent.get("name")
                if name is not None and name.split() != e.text.split() and name.lower().split() != e.text.lower().split():
                    raise DataFormatError(path, f"{role}.pos points at {e.text!r}, but the name is {name!r}",
                                          record=where, field=f"{role}.pos")
                ents.append(e)
            label = self._check_label(rec.get("relation"), known, path, where, "relation")
            out.append(Example(id=f"{split}-{lineno}", text=text, tokens=tokens, head=ents[0], tail=ents[1],
                               relations=self._relations(label),
                               meta={"label": label, "dataset": self.name}))
        return out
