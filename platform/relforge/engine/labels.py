"""Checking an input's gold labels against a trained model's label space,
before anything is scored (``relforge evaluate``/``predict``).

A gold label the model was not trained on cannot be predicted, so scoring
such examples silently would understate (or, mapped quietly, distort) the
metric. The user chooses: ``error`` (the default: one message with every
unknown label and its count), ``as-no-relation`` (the unknown labels are
removed from the examples' gold sets, so those pairs count as no relation)
or ``ignore`` (the examples holding one are left out). Whatever is done is
said, with counts.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from relforge.data.errors import DataError
from relforge.data.example import Example

Policy = Literal["error", "as-no-relation", "ignore"]
POLICIES: tuple[str, ...] = ("error", "as-no-relation", "ignore")


def unknown_labels(examples: Sequence[Example], labels: Sequence[str]) -> Counter:
    known = set(labels)
    return Counter(r for ex in examples for r in ex.relations if r not in known)


def apply_label_policy(examples: Sequence[Example], labels: Sequence[str], policy: str,
                       where: str = "the input") -> tuple[list[Example], str | None]:
    """(examples to score, a note saying what was done or None)."""
    if policy not in POLICIES:
        raise DataError(f"unknown-labels policy {policy!r}: use one of {', '.join(POLICIES)}")
    unknown = unknown_labels(examples, labels)
    if not unknown:
        return list(examples), None
    listed = ", ".join(f"{lab} ({n})" for lab, n in unknown.most_common())
    holding = sum(1 for ex in examples if any(r in unknown for r in ex.relations))
    if policy == "error":
        raise DataError(f"{where}: {holding} example(s) have gold labels the model was not trained on: {listed}. "
                        f"The model knows {len(labels)} labels; pass --unknown-labels as-no-relation (count those "
                        f"pairs as no relation) or --unknown-labels ignore (leave them out)")
    if policy == "ignore":
        kept = [ex for ex in examples if not any(r in unknown for r in ex.relations)]
        return kept, f"left out {holding} example(s) with labels the model does not know: {listed}"
    mapped = [dataclasses.replace(ex, relations=frozenset(r for r in ex.relations if r not in unknown))
              if any(r in unknown for r in ex.relations) else ex for ex in examples]
    return mapped, f"{holding} example(s) with labels the model does not know scored as no relation: {listed}"
