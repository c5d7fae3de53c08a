"""Typed configuration of the ingress (HTTP API) stage."""

from __future__ import annotations

from pydantic import Field

from deployments.config import StrictConfig


class IngressConfig(StrictConfig):
    """HTTP API settings."""

    model_name: str = Field(
        "ja-rag", description="Model id under which /v1/chat/completions answers with retrieval."
    )
    query_history_turns: int = Field(
        0,
        ge=0,
        le=10,
        description="Earlier user turns prepended to the last one to form the retrieval query.",
    )
    max_messages: int = Field(512, ge=1, description="Most messages accepted in one chat request.")
    max_input_chars: int = Field(
        16_000, ge=1, description="Most characters in one message, query or document."
    )
    max_batch_inputs: int = Field(
        2048, ge=1, description="Most texts in one /v1/embeddings or /v1/rerank request."
    )
    max_tokens_limit: int = Field(
        4096, ge=1, description="Largest max_tokens a client may ask for."
    )
    health_timeout_s: float = Field(
        10.0, gt=0, description="How long /healthz waits for each stage before calling it down."
    )
