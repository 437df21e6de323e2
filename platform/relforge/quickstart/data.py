"""An embedded relation-extraction data set that the project generates itself.

No third-party text: sentences are assembled from hand-written patterns and
made-up names (syllable compounds), deterministically from a seed. Entities
are typed (PER, ORG, LOC); relations are ``born_in``, ``lives_in``,
``works_for``, ``founded`` and ``located_in``; some entity pairs hold two
relations at once (born in and still lives in a place; founded and works for
a company), and some hold none (``no_relation``), so that multi-relation
output, thresholds and no-relation decisions are all exercised.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from relforge.components import Dataset, Settings
from relforge.data.example import Entity, Example

NO_RELATION = "no_relation"
RELATIONS = ["born_in", "lives_in", "works_for", "founded", "located_in"]

_SYL = ["ka", "lo", "ve", "ri", "sa", "mo", "te", "du", "na", "bel", "tor", "vin", "ash", "gal", "per", "ul",
        "dra", "mi", "zen", "fo"]
_ORG_SUFFIX = ["Labs", "Works", "Group", "Systems", "Foods", "Press", "Motors"]
_LOC_SUFFIX = ["", "", "ville", "burg", "ford", "port"]

# (relations, head type, tail type, pattern); {h} and {t} are the entities, {x} a distractor
_PATTERNS: list[tuple[tuple[str, ...], str, str, str]] = [
    (("born_in",), "PER", "LOC", "{h} was born in {t} in the spring ."),
    (("born_in",), "PER", "LOC", "Records show that {h} was born in {t} ."),
    (("born_in",), "PER", "LOC", "{h} , a native of {t} , moved to {x} as a child ."),
    (("lives_in",), "PER", "LOC", "{h} now lives in {t} with two dogs ."),
    (("lives_in",), "PER", "LOC", "These days {h} resides in {t} ."),
    (("works_for",), "PER", "ORG", "{h} works for {t} as an engineer ."),
    (("works_for",), "PER", "ORG", "{h} joined {t} last year and is employed there ."),
    (("founded",), "PER", "ORG", "{h} founded {t} but left it soon after ."),
    (("founded",), "PER", "ORG", "{t} was started by {h} in a garage ."),
    (("located_in",), "ORG", "LOC", "{h} is based in {t} ."),
    (("located_in",), "ORG", "LOC", "The headquarters of {h} are located in {t} ."),
    (("born_in", "lives_in"), "PER", "LOC", "{h} was born in {t} and still lives in {t2} ."),
    (("born_in", "lives_in"), "PER", "LOC", "Born in {t} , {h} has lived there ever since ."),
    (("founded", "works_for"), "PER", "ORG", "{h} founded {t} and still works there ."),
    (("founded", "works_for"), "PER", "ORG", "{h} , who started {t} , remains on its staff ."),
    ((), "PER", "LOC", "{h} once wrote a song about {t} ."),
    ((), "PER", "LOC", "{h} has never visited {t} ."),
    ((), "PER", "ORG", "{h} read an article about {t} ."),
    ((), "PER", "ORG", "{h} criticised {t} in an interview ."),
    ((), "ORG", "LOC", "{h} sells its products in {t} ."),
]


_OPENERS = ["", "", "", "According to the report ,", "Last year ,", "As the magazine noted ,", "In 2019 ,",
            "Friends say that"]


def _name(rng: random.Random, kind: str) -> list[str]:
    def word(n: int) -> str:
        return "".join(rng.choice(_SYL) for _ in range(n)).capitalize()

    if kind == "PER":
        return [word(2), word(rng.choice([2, 3]))]
    if kind == "ORG":
        return [word(2), rng.choice(_ORG_SUFFIX)]
    return [word(2) + rng.choice(_LOC_SUFFIX)]


def generate(n: int, seed: int, prefix: str) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        rels, htype, ttype, pattern = rng.choice(_PATTERNS)
        opener = rng.choice(_OPENERS)
        if opener:
            pattern = f"{opener} {pattern[0].lower()}{pattern[1:]}" if not pattern.startswith("{") else \
                f"{opener} {pattern}"
        head, tail, other = _name(rng, htype), _name(rng, ttype), _name(rng, "LOC")
        tokens: list[str] = []
        spans: dict[str, tuple[int, int]] = {}
        for piece in pattern.split():
            if piece in ("{h}", "{t}"):
                key = piece[1]
                if key not in spans:
                    spans[key] = (len(tokens), len(tokens) + len(head if key == "h" else tail))
                tokens.extend(head if key == "h" else tail)
            elif piece == "{t2}":
                tokens.extend(tail)
            elif piece == "{x}":
                tokens.extend(other)
            else:
                tokens.append(piece)
        text = " ".join(tokens)
        starts = [0]
        for tok in tokens[:-1]:
            starts.append(starts[-1] + len(tok) + 1)

        def entity(key: str, etype: str) -> Entity:
            a, b = spans[key]
            start, end = starts[a], starts[b - 1] + len(tokens[b - 1])
            return Entity(text[start:end], start, end, a, b, etype)

        out.append(Example(id=f"{prefix}-{i}", text=text, tokens=tokens, head=entity("h", htype),
                           tail=entity("t", ttype), relations=frozenset(rels), doc_id="quickstart",
                           sent_id=str(i)))
    rng.shuffle(out)
    return out


class QuickstartDataset(Dataset):
    """A generated data set embedded in RelForge (typed entities, multi-relation and no-relation pairs)."""

    name = "quickstart"
    no_relation = NO_RELATION
    metric = "multilabel"

    class Settings(Settings):
        train_size: int = Field(320, gt=0)
        dev_size: int = Field(80, gt=0)
        test_size: int = Field(100, gt=0)
        seed: int = 7

    def splits(self) -> list[str]:
        return ["train", "dev", "test"]

    def read(self, split: str, data_dir: Path | None = None) -> list[Example]:
        s = self.settings
        sizes = {"train": s.train_size, "dev": s.dev_size, "test": s.test_size}
        if split not in sizes:
            raise ValueError(f"quickstart has splits {list(sizes)}, not {split!r}")
        offset = {"train": 0, "dev": 1, "test": 2}[split]
        return generate(sizes[split], s.seed * 10 + offset, split)

    def labels(self, data_dir: Path | None = None) -> list[str]:
        return [NO_RELATION, *RELATIONS]


def label_words(labels: Sequence[str]) -> dict[str, str]:
    return {lab: lab.replace("_", " ") for lab in labels}
