"""FewRel 1.0 JSON, and the leak-free Wiki80 meta-training set.

``val_wiki.json`` (and ``train_wiki.json`` where the user has it) is an
object ``pid -> [{tokens, h: [name, qid, [[positions...], ...]], t: ...}]``;
positions are token indices of each mention (the first mention is used; the
others are kept in ``meta``). Labels are Wikidata property ids; their names
come from ``pid2name.json``.

The ``train`` split is the leak-free meta-training set for N-way K-shot
episodes on ``val_wiki``: every Wiki80 record (from the Wiki80 files that
exist) whose relation is not one of the 16 FewRel validation relations,
relabelled with its property id.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from relforge.data.errors import DataError, DataFormatError, ReadReport
from relforge.data.example import Example
from relforge.data.io import load_json
from relforge.data.paths import dataset_root, require_file
from relforge.data.readers.base import FileDataset, check_tokens, require
from relforge.data.text import entity_from_tokens, token_char_offsets

#: the 16 relations of FewRel 1.0 val_wiki
FEWREL_VAL_PIDS = ("P177", "P364", "P2094", "P361", "P641", "P59", "P413", "P206", "P412", "P155", "P26",
                   "P410", "P25", "P463", "P40", "P921")


class FewRelDataset(FileDataset):
    """FewRel 1.0 (val_wiki; train = Wiki80 without the val relations, leak-free)."""

    name = "fewrel"
    subdir = "fewrel"
    no_relation = None
    metric = "episode_accuracy"
    split_files: ClassVar = {
        "val_wiki": ("val_wiki.json", "FewRel 1.0 val_wiki.json (16 relations x 700)"),
        "train_wiki": ("train_wiki.json", "FewRel 1.0 train_wiki.json (64 relations x 700)"),
        "train": ("", "the leak-free meta-training set built from Wiki80"),
    }
    split_aliases: ClassVar = {"val": "val_wiki", "dev": "val_wiki", "test": "val_wiki"}

    class Settings(FileDataset.Settings):
        #: the Wiki80 folder (relative to the data directory, or absolute) for the `train` split
        wiki80_path: str = "wiki80"
        #: the Wiki80 files pooled into the meta-training set (missing ones are left out and reported)
        wiki80_files: list[str] = ["train.json", "dev.json", "test.json"]

    def pid2name(self, data_dir: Path | None) -> dict[str, str]:
        p = require_file(self.root(data_dir) / "pid2name.json",
                         "FewRel pid2name.json (property id -> [name, description])", dataset=self.name)
        data = load_json(p)
        if not isinstance(data, dict):
            raise DataFormatError(p, "expected a JSON object pid -> [name, description]")
        out = {}
        for pid, v in data.items():
            if not (isinstance(v, list) and v and isinstance(v[0], str)):
                raise DataFormatError(p, f"expected [name, description], got {v!r}", record=f"id {pid!r}")
            out[pid] = v[0]
        return out

    def relation_labels(self, data_dir: Path | None) -> list[str]:
        """The val_wiki relations, then those of train_wiki and of the Wiki80
        meta-training set (when their files are present)."""
        labels = dict.fromkeys(FEWREL_VAL_PIDS)
        for split in ("val_wiki", "train_wiki"):
            if self.split_available(split, data_dir):
                data = load_json(self.file(split, data_dir))
                if isinstance(data, dict):
                    labels.update(dict.fromkeys(data))
        wiki_rel2id = self._wiki80_root(data_dir) / "rel2id.json"
        if wiki_rel2id.is_file() and (self.root(data_dir) / "pid2name.json").is_file():
            name_to_pid = self._name_to_pid(data_dir)
            rel2id = load_json(wiki_rel2id)
            if isinstance(rel2id, dict):
                labels.update(dict.fromkeys(name_to_pid[n] for n in rel2id if n in name_to_pid))
        return list(labels)

    def _wiki80_root(self, data_dir: Path | None) -> Path:
        # absolute, so the Wiki80 reader built on it does not resolve it against data_dir again
        return dataset_root(data_dir, "wiki80", self.settings.wiki80_path, "wiki80").resolve()

    def _name_to_pid(self, data_dir: Path | None) -> dict[str, str]:
        out: dict[str, str] = {}
        for pid, name in self.pid2name(data_dir).items():
            out.setdefault(name, pid)
        return out

    def label_names(self, data_dir: Path | None) -> dict[str, str]:
        names = self.pid2name(data_dir)
        return {pid: names.get(pid, pid) for pid in self.relation_labels(data_dir)}

    def file(self, split, data_dir):
        if self.canonical_split(split) == "train":
            raise DataError("the fewrel `train` split is built from Wiki80, not read from one file")
        return super().file(split, data_dir)

    def split_available(self, split, data_dir):
        if self.has_split(split) and self.canonical_split(split) == "train":
            return True
        return super().split_available(split, data_dir)

    def _read(self, split: str, data_dir: Path | None, report: ReadReport) -> list[Example]:
        if split == "train":
            return self._meta_train(data_dir, report)
        path = self.file(split, data_dir)
        report.files.append(str(path))
        data = load_json(path)
        if not isinstance(data, dict) or not data:
            raise DataFormatError(path, "expected a non-empty JSON object pid -> list of instances")
        out = []
        for pid, instances in data.items():
            if not isinstance(instances, list):
                raise DataFormatError(path, f"expected a list of instances, got {type(instances).__name__}",
                                      record=f"relation {pid!r}")
            for i, rec in enumerate(instances):
                where = f"relation {pid!r}, instance {i}"
                report.records += 1
                tokens = check_tokens(require(rec, "tokens", list, path, where), path, where, "tokens")
                text, offsets = token_char_offsets(tokens)
                ents, meta = [], {"label": pid, "dataset": self.name}
                for role in ("h", "t"):
                    ent = require(rec, role, list, path, where)
                    if len(ent) != 3 or not isinstance(ent[2], list) or not ent[2]:
                        raise DataFormatError(path, f"expected [name, id, [[positions], ...]], got {ent!r}",
                                              record=where, field=role)
                    pos = ent[2][0]
                    if (not isinstance(pos, list) or not pos or not all(isinstance(x, int) for x in pos)
                            or min(pos) < 0 or max(pos) >= len(tokens)):
                        raise DataFormatError(path, f"positions {pos!r} out of range for {len(tokens)} tokens",
                                              record=where, field=f"{role}[2]")
                    s, e = min(pos), max(pos) + 1
                    covered = "".join(tokens[x] for x in pos).casefold()
                    if isinstance(ent[0], str) and "".join(ent[0].split()).casefold() != covered:
                        raise DataFormatError(path, f"positions {pos} cover {' '.join(tokens[x] for x in pos)!r}, "
                                              f"not the mention {ent[0]!r}", record=where, field=f"{role}[2]")
                    if sorted(pos) != list(range(s, e)):
                        meta[f"{role}_discontinuous"] = pos
                    ents.append(entity_from_tokens(text, offsets, s, e))
                    meta[f"{role}_id"] = ent[1]
                    if len(ent[2]) > 1:
                        meta[f"{role}_other_mentions"] = ent[2][1:]
                out.append(Example(id=f"{split}-{pid}-{i}", text=text, tokens=tokens, head=ents[0], tail=ents[1],
                                   relations=frozenset([pid]), meta=meta))
        return out

    def _meta_train(self, data_dir: Path | None, report: ReadReport) -> list[Example]:
        from relforge.data.readers.wiki80 import Wiki80Dataset, read_tacred_style_list

        names = self.pid2name(data_dir)
        name_to_pid = self._name_to_pid(data_dir)
        wiki = Wiki80Dataset(Wiki80Dataset.Settings(path=str(self._wiki80_root(data_dir))))
        val_names = {names.get(p) for p in FEWREL_VAL_PIDS}
        out, seen = [], set()
        for fname in self.settings.wiki80_files:
            p = wiki.root(data_dir) / fname
            if not p.is_file():
                report.notes.append(f"{p} not found; left out of the meta-training set")
                continue
            for ex in read_tacred_style_list(wiki, p, Path(fname).stem, report, known=None):
                name = ex.meta["label"]
                key = (tuple(ex.tokens), ex.head.token_start, ex.tail.token_start, name)
                if key in seen:
                    report.skip("duplicate of a record in another Wiki80 file", ex.id)
                    continue
                seen.add(key)
                if name in val_names:
                    report.skip("relation of FewRel val_wiki (left out: leak-free)", ex.id)
                    continue
                pid = name_to_pid.get(name)
                if pid is None:
                    raise DataFormatError(p, f"relation {name!r} has no property id in pid2name.json",
                                          record=ex.id, field="relation")
                out.append(Example(id=f"train-{ex.id}", text=ex.text, tokens=ex.tokens, head=ex.head,
                                   tail=ex.tail, relations=frozenset([pid]),
                                   meta={**ex.meta, "label": pid, "wiki80_label": name, "dataset": self.name}))
        if not report.files:
            raise DataError(f"no Wiki80 file found for the fewrel meta-training set under {wiki.root(data_dir)} "
                            f"(looked for {', '.join(self.settings.wiki80_files)}); put the Wiki80 JSON files "
                            f"there or set data.dataset.wiki80_path")
        return out
