"""Generator stage: streams an answer grounded in the reranked passages."""
