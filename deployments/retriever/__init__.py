"""Retriever stage: FAISS search over a versioned index directory."""
