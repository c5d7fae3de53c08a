"""Character n-gram statistics behind the built-in embedder, reranker and generator."""
