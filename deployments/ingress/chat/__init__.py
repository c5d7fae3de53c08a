"""POST /v1/chat/completions: retrieval-augmented chat, OpenAI-compatible."""
