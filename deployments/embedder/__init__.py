"""Embedder stage: text to L2-normalised vectors."""
