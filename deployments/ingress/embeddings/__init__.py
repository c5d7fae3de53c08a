"""POST /v1/embeddings: the embedder as an OpenAI-compatible embedding provider."""
