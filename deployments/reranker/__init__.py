"""Reranker stage: rescoring of retrieved candidates."""
