"""NYT in the CasRel/CopyRE triple format.

Each record is ``{text, triple_list: [[subject, relation, object], ...]}``
over a space-tokenised sentence. Triples are grouped into entity pairs (one
example per ordered (subject, object) pair, holding the SET of its
relations), and each entity's token span is found in the text: the first
occurrence, preferring a tail occurrence that does not overlap the head.
When an entity is not found verbatim it is looked for with accents ignored
(``Cancún`` in ``Cancun``); a pair with an entity that is still not found is
skipped, counted and reported. With ``na_pairs``, every other ordered pair of
entities that co-occur in the sentence becomes a no-relation example.

``NYT/`` is the exact-match variant (full entity names), ``NYT-star/`` the
partial-match variant (last word of each entity).
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import ClassVar

from relforge.data.errors import DataFormatError, ReadReport
from relforge.data.example import Entity, Example
from relforge.data.io import load_json
from relforge.data.readers.base import FileDataset, require
from relforge.data.paths import require_file

_WORD = re.compile(r"\S+")


def _fold(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def _occurrences(tokens: list[str], needle: list[str]) -> list[int]:
    n = len(needle)
    return [i for i in range(len(tokens) - n + 1) if tokens[i:i + n] == needle] if n else []


class NYTDataset(FileDataset):
    """NYT exact-match (CasRel triples grouped into entity pairs with relation sets)."""

    name = "nyt"
    subdir = "nyt/NYT"
    no_relation = "NA"
    metric = "multilabel"
    split_files: ClassVar = {
        "train": ("train_triples.json", "NYT train_triples.json (CasRel format; 56,195 sentences)"),
        "dev": ("val_triples.json", "NYT val_triples.json (CasRel format; 5,000 sentences)"),
        "test": ("test_triples.json", "NYT test_triples.json (CasRel format; 5,000 sentences)"),
    }
    split_aliases: ClassVar = {"val": "dev"}

    class Settings(FileDataset.Settings):
        #: add a no-relation example for every other ordered pair of co-occurring entities
        na_pairs: bool = False
        #: look entities up ignoring accents when they are not found verbatim
        fold_accents: bool = True

    def relation_labels(self, data_dir: Path | None) -> list[str]:
        p = require_file(self.root(data_dir) / "rel2id.json", "NYT rel2id.json ([id2rel, rel2id])",
                         dataset=self.name)
        data = load_json(p)
        if isinstance(data, list) and len(data) == 2 and isinstance(data[0], dict):
            id2rel = data[0]
            return [id2rel[k] for k in sorted(id2rel, key=int)]
        if isinstance(data, dict):
            return sorted(data, key=lambda k: data[k])
        raise DataFormatError(p, "expected [id2rel, rel2id] or an object relation -> id")

    def labels(self, data_dir: Path | None = None) -> list[str]:
        rels = self.relation_labels(data_dir)
        return ([self.no_relation] if self.settings.na_pairs else []) + rels

    def _find(self, tokens: list[str], folded: list[str], name: str) -> tuple[list[int], bool]:
        words = name.split()
        occ = _occurrences(tokens, words)
        if occ or not self.settings.fold_accents:
            return occ, False
        return _occurrences(folded, [_fold(w) for w in words]), True

    def _read(self, split: str, data_dir: Path | None, report: ReadReport) -> list[Example]:
        path = self.file(split, data_dir)
        report.files.append(str(path))
        data = load_json(path)
        if not isinstance(data, list) or not data:
            raise DataFormatError(path, "expected a non-empty JSON list of {text, triple_list} records")
        known = set(self.relation_labels(data_dir))
        out: list[Example] = []
        duplicates = 0
        for i, rec in enumerate(data):
            where = f"record {i}"
            report.records += 1
            text = require(rec, "text", str, path, where)
            triples = require(rec, "triple_list", list, path, where)
            matches = list(_WORD.finditer(text))
            tokens = [m.group() for m in matches]
            offsets = [(m.start(), m.end()) for m in matches]
            folded = [_fold(t) for t in tokens]
            pairs: dict[tuple[str, str], set[str]] = {}
            for j, tr in enumerate(triples):
                if not (isinstance(tr, list) and len(tr) == 3 and all(isinstance(x, str) and x for x in tr)):
                    raise DataFormatError(path, f"expected [subject, relation, object] strings, got {tr!r}",
                                          record=where, field=f"triple_list[{j}]")
                self._check_label(tr[1], known, path, where, f"triple_list[{j}][1]")
                rels = pairs.setdefault((tr[0], tr[2]), set())
                duplicates += tr[1] in rels
                rels.add(tr[1])
            found: dict[str, tuple[list[int], bool]] = {}
            for name in {n for p in pairs for n in p}:
                found[name] = self._find(tokens, folded, name)
            entity_names = [n for n in dict.fromkeys(n for p in pairs for n in p) if found[n][0]]

            def make(k: int, h: str, t: str, rels: set[str]) -> Example | None:
                (hocc, hfold), (tocc, tfold) = found[h], found[t]
                missing = [n for n, occ in ((h, hocc), (t, tocc)) if not occ]
                if missing:
                    report.skip("entity not found in the sentence", f"{where}: {missing[0]!r}")
                    return None
                hl, tl = len(h.split()), len(t.split())
                hs = hocc[0]
                ts = next((o for o in tocc if o + tl <= hs or o >= hs + hl), None)
                overlap = ts is None
                if overlap:
                    ts = tocc[0]
                ents = []
                for s, n, ty in ((hs, hl, None), (ts, tl, None)):
                    a, b = offsets[s][0], offsets[s + n - 1][1]
                    ents.append(Entity(text=text[a:b], start=a, end=b, token_start=s, token_end=s + n, type=ty))
                meta = {"dataset": self.name, "record": i, "head_name": h, "tail_name": t,
                        "head_occurrences": len(hocc), "tail_occurrences": len(tocc)}
                if hfold or tfold:
                    meta["accent_folded"] = True
                if overlap:
                    meta["overlapping_entities"] = True
                if not rels:
                    meta["na_pair"] = True
                return Example(id=f"{split}-{i}-{k}", text=text, tokens=tokens, head=ents[0], tail=ents[1],
                               relations=frozenset(rels), sent_id=f"{split}-{i}", meta=meta)

            k = 0
            for (h, t), rels in pairs.items():
                ex = make(k, h, t, rels)
                k += 1
                if ex is not None:
                    out.append(ex)
            if self.settings.na_pairs:
                for h in entity_names:
                    for t in entity_names:
                        if h != t and (h, t) not in pairs:
                            ex = make(k, h, t, set())
                            k += 1
                            if ex is not None:
                                out.append(ex)
        if duplicates:
            report.notes.append(f"{duplicates} repeated triple(s) merged (a pair's relations are a set)")
        return out


class NYTStarDataset(NYTDataset):
    """NYT* partial-match variant (last word of each entity), CasRel's 'NYT'."""

    name = "nyt_star"
    subdir = "nyt/NYT-star"
