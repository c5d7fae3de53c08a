"""Typed configuration of the ingress (HTTP API) stage."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from deployments.config import StrictConfig
from deployments.retriever.search_parameters import SearchParameters

FOLLOW_UP_PROMPT_JA = (
    "あなたは検索クエリを作るアシスタントです。会話の最後の質問を、それまでの会話を読まなくても"
    "意味が通る独立した質問に書き換えてください。「そこ」「それ」などの指す語は具体的な名前に"
    "置き換え、省略された主語は補ってください。書き換えた質問を一行だけ出力してください。"
)
GENERATOR_UNAVAILABLE_JA = (
    "回答を生成できませんでした（生成モデルが一時的に利用できません）。"
    "質問に関連する資料は sources に示したとおりです。"
)


Endpoint = Literal["chat", "embeddings", "rerank", "retrieval", "tei", "models"]
"""Groups of routes a key may be limited to: chat (/v1/chat/completions), embeddings
(/v1/embeddings), rerank (/v1/rerank, /rerank), retrieval (Dify's /retrieval), tei
(/tei/...), models (/v1/models)."""


class ScopedKey(StrictConfig):
    """One API key, read from an environment variable or a file, and what it may reach."""

    name: str = Field(
        description="A label for this key in the config and in error messages (never the key)."
    )
    env: str | None = Field(
        None, description="Environment variable holding the key (read when the ingress starts)."
    )
    file: str | None = Field(
        None,
        description="File holding the key (its content, surrounding whitespace removed; read "
        "when the ingress starts), e.g. a mounted Kubernetes Secret.",
    )
    knowledge_bases: tuple[str, ...] | None = Field(
        None,
        description="Knowledge bases it may search (chat, /retrieval, /v1/models list); "
        "default: all.",
    )
    endpoints: tuple[Endpoint, ...] | None = Field(
        None,
        description="Endpoint groups it may call: chat, embeddings, rerank, retrieval, tei, "
        "models; default: all.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ScopedKey:
        if (self.env is None) == (self.file is None):
            raise ValueError(f"auth key {self.name!r}: give exactly one of env and file")
        return self

    def read(self) -> str:
        if self.env is not None:
            value = os.environ.get(self.env, "").strip()
            if not value:
                raise ValueError(
                    f"ingress.auth key {self.name!r}: environment variable {self.env!r} is "
                    "unset or empty in the ingress replica's process"
                )
            return value
        assert self.file is not None
        try:
            value = Path(self.file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ValueError(
                f"ingress.auth key {self.name!r}: cannot read {self.file}: {error.strerror}"
            ) from None
        if not value:
            raise ValueError(f"ingress.auth key {self.name!r}: {self.file} is empty")
        return value


@dataclass(frozen=True, slots=True)
class Grant:
    """What a request's key may reach; None means everything."""

    knowledge_bases: frozenset[str] | None = None
    endpoints: frozenset[str] | None = None

    def allows_endpoint(self, endpoint: str | None) -> bool:
        return endpoint is None or self.endpoints is None or endpoint in self.endpoints

    def allows_knowledge_base(self, name: str) -> bool:
        return self.knowledge_bases is None or name in self.knowledge_bases


FULL_ACCESS = Grant()


class AuthConfig(StrictConfig):
    """Optional API keys. With none configured (the default) the API is open; with
    some, every request except to ``exempt_paths`` must carry
    ``Authorization: Bearer <key>`` with one of them (compared in constant time). Keys of
    ``api_key_env``, ``api_keys`` and ``api_key_file`` reach everything; those of
    ``keys`` may be limited to some knowledge bases and endpoints (403 beyond them)."""

    api_key_env: tuple[str, ...] = Field(
        (),
        description="Names of environment variables that each hold one accepted key. They "
        "are read by the ingress replica when it starts (set them where Ray runs, e.g. a "
        "Kubernetes Secret mounted as env); an unset or empty one stops the deploy.",
    )
    api_keys: tuple[SecretStr, ...] = Field(
        (),
        description="Accepted keys written in the config itself. Prefer api_key_env: a Serve "
        "config is shown in the Ray dashboard and often kept in version control.",
    )
    api_key_file: str | None = Field(
        None,
        description="File of accepted keys, one a line (blank lines and lines starting with # "
        "skipped), read by the ingress replica when it starts.",
    )
    keys: tuple[ScopedKey, ...] = Field(
        (),
        description="Keys limited to some knowledge bases and endpoints, each read from an "
        "environment variable or a file.",
    )
    exempt_paths: tuple[str, ...] = Field(
        ("/healthz", "/", "/ui/", "/ui/chat.js", "/ui/chat.css"),
        description="Paths served without a key (exact match): by default the health check "
        "and the chat page's static files, which hold no data (the page asks for a key). Add "
        "/docs and /openapi.json to browse the API description.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> AuthConfig:
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names):
            raise ValueError("ingress.auth.keys: names must be unique")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.api_key_env or self.api_keys or self.api_key_file or self.keys)

    def resolve_keys(self) -> list[bytes]:
        """The accepted keys, the named environment variables and files read now."""
        return [key for key, _ in self.resolve_grants()]

    def resolve_grants(self) -> list[tuple[bytes, Grant]]:
        """Each accepted key with what it may reach, environment variables and files
        read now."""
        keys = [(key.get_secret_value().encode(), FULL_ACCESS) for key in self.api_keys]
        for name in self.api_key_env:
            value = os.environ.get(name, "")
            if not value:
                raise ValueError(
                    f"ingress.auth.api_key_env names {name!r}, but that environment variable "
                    "is unset or empty in the ingress replica's process"
                )
            keys.append((value.encode(), FULL_ACCESS))
        if self.api_key_file is not None:
            try:
                lines = Path(self.api_key_file).expanduser().read_text(encoding="utf-8")
            except OSError as error:
                raise ValueError(
                    f"ingress.auth.api_key_file: cannot read {self.api_key_file}: {error.strerror}"
                ) from None
            found = [
                line.strip()
                for line in lines.splitlines()
                if line.strip() and not line.strip().startswith("#")
            ]
            if not found:
                raise ValueError(f"ingress.auth.api_key_file {self.api_key_file} holds no key")
            keys += [(line.encode(), FULL_ACCESS) for line in found]
        for scoped in self.keys:
            grant = Grant(
                None if scoped.knowledge_bases is None else frozenset(scoped.knowledge_bases),
                None if scoped.endpoints is None else frozenset(scoped.endpoints),
            )
            keys.append((scoped.read().encode(), grant))
        if any(not key.strip() for key, _ in keys):
            raise ValueError("ingress.auth: an API key must not be empty")
        return keys


class CorsConfig(StrictConfig):
    """Cross-origin access from browsers; off unless ``allow_origins`` lists some."""

    allow_origins: tuple[str, ...] = Field(
        (),
        description="Origins (scheme://host[:port]) whose web pages may call the API; empty "
        "turns CORS off; '*' allows every origin (not with allow_credentials).",
    )
    allow_methods: tuple[str, ...] = Field(("GET", "POST"), description="Methods allowed.")
    allow_headers: tuple[str, ...] = Field(
        ("Authorization", "Content-Type", "X-Request-Timeout"),
        description="Request headers a page may send.",
    )
    allow_credentials: bool = Field(
        False, description="Whether browsers may send cookies or HTTP authentication."
    )
    max_age_s: int = Field(600, ge=0, description="How long browsers may cache a preflight.")

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> CorsConfig:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("cors: allow_origins '*' cannot be combined with allow_credentials")
        return self


class IngressConfig(StrictConfig):
    """HTTP API settings."""

    model_name: str = Field(
        "ja-rag", description="Model id under which /v1/chat/completions answers with retrieval."
    )
    follow_ups: Literal["rule", "generator", "off"] = Field(
        "rule",
        description="How a follow-up question becomes a retrieval query that stands alone: "
        "'rule' carries the conversation's subject (the head of the title of the previous "
        "turn's first passage) into a turn that does not name the subject of what it finds; "
        "'generator' has the generator rewrite the last turn from the conversation (one "
        "extra generation, for LLM backends); 'off' searches the last turn alone. "
        "Single-turn requests are searched as they are.",
    )
    follow_up_turns: int = Field(
        4, ge=0, le=20, description="Earlier user turns the 'rule' looks back over."
    )
    follow_up_prompt: str = Field(
        FOLLOW_UP_PROMPT_JA,
        description="Instruction of the 'generator' rewrite; the conversation and the last "
        "question follow it.",
    )
    follow_up_max_tokens: int = Field(
        64, ge=1, le=1024, description="Longest 'generator' rewrite, in tokens."
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
    max_request_bytes: int = Field(
        16 << 20, ge=1024, description="Largest request body in bytes; a larger one gets 413."
    )
    health_timeout_s: float = Field(
        10.0, gt=0, description="How long /healthz waits for each stage before calling it down."
    )
    request_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Deadline of one request over the whole chain of stages (a stream included); "
        "past it the request ends with 504 and the stages' work on it is cancelled. A client "
        "may ask for less with the X-Request-Timeout header (seconds).",
    )
    reranker_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest wait for the reranker in a chat request; past it, or when the "
        "reranker is down, the answer uses the retriever's order and says so in 'degraded'.",
    )
    generator_start_timeout_s: float = Field(
        15.0,
        gt=0,
        description="Longest wait for a generator replica to take a chat request; past it, or "
        "when the generator is down, the sources are returned with generator_unavailable_message.",
    )
    stage_retries: int = Field(
        1,
        ge=0,
        le=3,
        description="Times a stage call is sent again, to another replica, when the replica "
        "it was on died (a stream only before its first piece reached the client).",
    )
    retry_after_s: int = Field(
        1,
        ge=0,
        description="Retry-After (seconds) sent with a 503/429 when a stage is full or down, "
        "unless the stage's backpressure_config sets its own.",
    )
    generator_unavailable_message: str = Field(
        GENERATOR_UNAVAILABLE_JA,
        description="The answer's text when the generator is down (the sources are still given).",
    )
    auth: AuthConfig = Field(default_factory=AuthConfig, description="Optional API keys.")
    cors: CorsConfig = Field(default_factory=CorsConfig, description="Browser cross-origin access.")


class RetrievalDefaults(StrictConfig):
    """What a chat request retrieves when its ``rag`` options say nothing: the builder
    takes them from the retriever's ``top_k`` and the reranker's ``top_n``, and the
    ingress resolves every request against them (the stages get explicit values)."""

    top_k: int = Field(ge=1, le=1000, description="Candidates retrieved.")
    top_n: int = Field(
        ge=1,
        le=100,
        description="Passages given to the generator (in the retriever's order when the "
        "reranker is unavailable).",
    )

    search: SearchParameters | None = Field(
        None,
        description="FAISS search settings of one request (nprobe, ef_search) over the "
        "retriever's search_parameters; none by default.",
    )

    def resolve(
        self,
        top_k: int | None,
        top_n: int | None,
        search: SearchParameters | None = None,
    ) -> RetrievalDefaults:
        """The settings of one request: its own where it gives them, else these."""
        return RetrievalDefaults(
            top_k=top_k or self.top_k, top_n=top_n or self.top_n, search=search or self.search
        )
