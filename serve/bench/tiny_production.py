"""The production tier's tiny stack: random-weight models loaded by path like hub
models, and the overlay that puts them into serve_config.yaml (model paths, devices,
dtypes, memory settings, the index and the HTTP port; nothing else). Shared by
`make test-production` and `jarag bench vllm`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve.bench import random_models

APP = "ja-rag"
"""The application's name in serve_config.yaml."""
MAX_MODEL_LEN = 1024
ENCODER = random_models.EncoderShape(
    hidden_size=32, layers=2, heads=2, intermediate_size=64, max_positions=512
)
CHAT_SHAPE: dict[str, Any] = {"hidden_size": 128, "heads": 2, "kv_heads": 1, "dtype": "bfloat16"}
"""The production tier's tiny chat model: 2-layer Llama, head size 64 (as vLLM's CPU
attention needs), grouped-query attention."""
GENERATOR_OVERLAY: dict[str, Any] = {
    "max_model_len": MAX_MODEL_LEN,
    "enforce_eager": True,
    # vLLM's CPU build sizes its KV cache from this (default 4 GiB).
    "engine_kwargs": {"kv_cache_memory_bytes": 256 * 1024 * 1024},
}
VLLM_ENV = {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}
"""vLLM's CPU worker otherwise pins its threads to cores: on a small shared machine, let
the OS place them (the production tier's setting, given to both servers)."""


@dataclass(frozen=True)
class Models:
    embedder: Path
    cross_encoder: Path
    chat: Path
    """2-layer Llama, hidden 128, 2 heads, 1 KV head, byte-level BPE tokenizer, Llama 3
    chat template."""


def build_models(root: Path, chat: Path | None) -> Models:
    """The production tier's tiny random-weight models (the chat model unless given)."""
    sentences = random_models.corpus_sentences()
    tokenizer = random_models.wordpiece_tokenizer(sentences)
    return Models(
        embedder=random_models.build_embedder(root / "embedder", tokenizer, ENCODER),
        cross_encoder=random_models.build_cross_encoder(root / "reranker", tokenizer, ENCODER),
        chat=chat or random_models.build_chat_model(root / "chat", sentences, **CHAT_SHAPE),
    )


def overlay(models: Models, index: Path, port: int) -> dict[str, Any]:
    """The overlay of serve_config.yaml for ``models``, ``index`` and ``port``."""
    return {
        "http_options": {"port": port},
        "applications": [
            {
                "name": APP,
                "args": {
                    "index": {"path": str(index)},
                    "embedder": {
                        "model": str(models.embedder),
                        "device": "cpu",
                        "dtype": "float32",
                    },
                    "reranker": {
                        "model": str(models.cross_encoder),
                        "device": "cpu",
                        "dtype": "float32",
                    },
                    "generator": {"model": str(models.chat), **GENERATOR_OVERLAY},
                },
                "deployments": [
                    {
                        "name": "Generator",
                        "ray_actor_options": {"runtime_env": {"env_vars": VLLM_ENV}},
                    }
                ],
            }
        ],
    }
