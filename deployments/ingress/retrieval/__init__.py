"""POST /retrieval: the knowledge bases as Dify's External Knowledge API."""
