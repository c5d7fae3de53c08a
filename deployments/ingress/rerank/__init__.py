"""POST /v1/rerank: the reranker as a Cohere/Jina-style rerank provider (Dify, LangChain)."""
