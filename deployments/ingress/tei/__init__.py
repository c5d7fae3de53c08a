"""A Text Embeddings Inference (TEI) face: the embedder under /tei/embedder and the
reranker under /tei/reranker, as TEI clients (Dify's "Text Embedding Inference"
provider, LangChain, LlamaIndex) call a TEI server."""
