"""Building examples from tokens or from raw text with consistent offsets."""
from __future__ import annotations

import re
from collections.abc import Sequence

from relforge.data.example import Entity

#: PTB escapes of brackets as TACRED's tokens carry them
PTB_BRACKETS = {"-lrb-": "(", "-rrb-": ")", "-lsb-": "[", "-rsb-": "]", "-lcb-": "{", "-rcb-": "}"}


def restore_ptb(tokens: Sequence[str]) -> list[str]:
    """``-LRB-``/``-lrb-`` and friends back to the bracket characters."""
    return [PTB_BRACKETS.get(t.lower(), t) for t in tokens]


def token_char_offsets(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The text of ``tokens`` joined by single spaces, and each token's
    character span (exclusive end)."""
    offsets = []
    pos = 0
    for t in tokens:
        offsets.append((pos, pos + len(t)))
        pos += len(t) + 1
    return " ".join(tokens), offsets


def entity_from_tokens(text: str, offsets: Sequence[tuple[int, int]], token_start: int, token_end: int,
                       type: str | None = None) -> Entity:
    """An entity over tokens [token_start, token_end) of a space-joined text."""
    start = offsets[token_start][0]
    end = offsets[token_end - 1][1]
    return Entity(text=text[start:end], start=start, end=end, token_start=token_start,
                  token_end=token_end, type=type)


_TOKEN = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]", re.UNICODE)


def tokenize_with_offsets(text: str, boundaries: Sequence[int] = ()) -> tuple[list[str], list[tuple[int, int]]]:
    """Split ``text`` into word and punctuation tokens with character spans.

    Every position in ``boundaries`` (entity starts and ends) is forced to be
    a token boundary, so entity spans map exactly onto tokens.
    """
    cuts = sorted({0, len(text), *[b for b in boundaries if 0 <= b <= len(text)]})
    tokens, offsets = [], []
    for a, b in zip(cuts, cuts[1:]):
        for m in _TOKEN.finditer(text, a, b):
            tokens.append(m.group())
            offsets.append((m.start(), m.end()))
    return tokens, offsets


def char_to_token_span(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """The token span covering characters [start, end), or None when the
    character span does not start and end on token boundaries."""
    ts = next((i for i, (s, _) in enumerate(offsets) if s == start), None)
    te = next((i + 1 for i, (_, e) in enumerate(offsets) if e == end), None)
    if ts is None or te is None or te <= ts:
        return None
    return ts, te
