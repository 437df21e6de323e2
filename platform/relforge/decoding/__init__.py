"""Constrained decoding: the label Trie, batched masking and candidate scoring."""
