"""Backbones: loading transformers models and tokenizers (offline-first)."""
