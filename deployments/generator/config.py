"""Typed configuration of the generator stage: one engine per ``backend``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, Tag, model_validator

from deployments.config import StrictConfig, backend_discriminator
from deployments.torch_runtime import Device, DType

NO_ANSWER_JA = "ご質問に関連する情報は、参照した資料の中に見つかりませんでした。"
DEFAULT_SENTENCE_WEIGHTS = Path(__file__).with_name("sentence_weights.json")
"""Sentence scorer trained on JaQuAD by ``python -m serve.training.generator``."""


class ExtractiveGeneratorConfig(StrictConfig):
    """Built-in generator: answers with the passage sentence (or two) most likely to hold
    the answer, chosen by a linear model learned on JaQuAD, each followed by its citation
    marker, streamed piece by piece. No model download, no GPU."""

    backend: Literal["extractive"] = Field("extractive", description="Selects this engine.")
    max_sentences: int = Field(2, ge=1, le=10, description="Most sentences in an answer.")
    second_sentence_ratio: float = Field(
        0.1,
        ge=0,
        le=1,
        description="A sentence after the best one is added only while the model finds it at "
        "least this many times as likely as the best to hold the answer (0: always add up to "
        "max_sentences; 1: only exact ties). Lower gives longer answers that more often "
        "contain the answer.",
    )
    min_score: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Least share of the question's bigrams (question phrases such as 何年 or "
        "ですか left out) the best sentence must contain; below it the answer says nothing "
        "relevant was found.",
    )
    weights_path: str | None = Field(
        None,
        description="JSON weights of the sentence scorer written by "
        "`python -m serve.training.generator`; default: those shipped with the package.",
    )
    no_answer_message: str = Field(NO_ANSWER_JA, description="Said when nothing relevant is found.")
    piece_chars: int = Field(4, ge=1, description="Characters per streamed piece (one 'token').")
    piece_delay_s: float = Field(
        0.0, ge=0, description="Pause between pieces, to imitate an LLM's pace in tests and demos."
    )

    @property
    def weights_file(self) -> Path:
        return (
            Path(self.weights_path).expanduser() if self.weights_path else DEFAULT_SENTENCE_WEIGHTS
        )


SYSTEM_PROMPT_JA = (
    "あなたは誠実で優秀な日本人のアシスタントです。"
    "ユーザーの質問に、与えられた参考資料だけに基づいて日本語で簡潔に答えてください。"
)
RAG_INSTRUCTIONS_JA = (
    "次の参考資料だけを使って、最後の質問に答えてください。"
    "答えの根拠にした資料の番号を、文末に [1] のように付けてください。"
    "資料に答えが書かれていない場合は、推測せずに「資料からは分かりません」と答えてください。"
)


class PromptSettings(StrictConfig):
    """How a conversation and its numbered passages become the model's messages."""

    system_prompt: str = Field(
        SYSTEM_PROMPT_JA, description="System message put before the conversation."
    )
    rag_instructions: str = Field(
        RAG_INSTRUCTIONS_JA,
        description="Put before the numbered passages in the last user message: answer only "
        "from them and cite them as [n].",
    )
    passage_template: str = Field(
        "[{number}] {title}\n{text}",
        description="How each passage is written; fields {number}, {title}, {text}, {url}.",
    )
    question_template: str = Field(
        "質問: {question}", description="How the question follows the passages; field {question}."
    )
    max_passage_chars: int = Field(
        1200, ge=50, description="Longest passage text put in the prompt, in characters."
    )
    max_history_turns: int = Field(
        6, ge=0, le=100, description="Earlier user and assistant turns kept before the question."
    )

    @model_validator(mode="after")
    def _templates_have_their_fields(self) -> PromptSettings:
        if "{text}" not in self.passage_template or "{number}" not in self.passage_template:
            raise ValueError("passage_template must contain {number} and {text}")
        if "{question}" not in self.question_template:
            raise ValueError("question_template must contain {question}")
        return self


class SamplingDefaults(StrictConfig):
    """Sampling used when a request does not say; a request's own values win."""

    max_tokens: int = Field(512, ge=1, description="Most tokens generated per answer.")
    temperature: float = Field(
        0.2, ge=0, le=2, description="Sampling temperature; 0 is greedy decoding."
    )
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling probability mass.")
    repetition_penalty: float = Field(
        1.0, gt=0, le=2, description="Penalty on repeated tokens (1.0: none); local engines only."
    )


class VLLMGeneratorConfig(StrictConfig):
    """vLLM's async engine inside the Generator replica: continuous batching, token
    streaming, the model's own chat template. Needs a CUDA GPU and
    ``pip install 'ja-rag-serve[gpu]'``.

    With ``tensor_parallel_size`` > 1 give the Generator deployment
    ``placement_group_bundles`` (one GPU per bundle) and ``num_gpus: 0`` in its
    ``ray_actor_options``; see docs/production.md, "More than one GPU: tensor parallelism".
    """

    backend: Literal["vllm"] = Field(description="Selects this engine.")
    model: str = Field(description="Hugging Face model id or local directory of the chat model.")
    served_model_name: str | None = Field(
        None,
        description="Model id shown to API clients; default: `model` (of a path, its last part).",
    )
    revision: str | None = Field(None, description="Hub revision to pin; default: main.")
    tokenizer: str | None = Field(None, description="Tokenizer id or path; default: `model`'s.")
    dtype: DType = Field("auto", description="Weight precision; 'auto' follows the model config.")
    quantization: str | None = Field(
        None, description="vLLM quantization method (awq, gptq, fp8, ...); default: none."
    )
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="GPUs one replica spans.")
    distributed_executor_backend: Literal["auto", "mp", "ray"] = Field(
        "auto",
        description="How vLLM runs tensor-parallel workers: 'ray' inside the replica's placement "
        "group (bundles), 'mp' as local processes over the replica's own GPUs; 'auto' picks "
        "'ray' when the replica has a placement group.",
    )
    gpu_memory_utilization: float = Field(
        0.7,
        gt=0,
        le=0.98,
        description="Share of the GPU's memory vLLM may take (weights and KV cache). Keep it at "
        "most the Generator's num_gpus when other stages share the GPU; `jarag check` verifies.",
    )
    max_model_len: int | None = Field(
        None, ge=256, description="Longest prompt + answer in tokens; default: the model's."
    )
    max_num_seqs: int | None = Field(
        None, ge=1, description="Most sequences decoded together; default: vLLM's."
    )
    stream_interval: int | None = Field(
        None,
        ge=1,
        description="Tokens vLLM gathers per streamed piece after the first, which goes at "
        "once: fewer messages through every hop at many streams, coarser streaming; default: "
        "vLLM's (1, every token).",
    )
    enforce_eager: bool = Field(
        False, description="Skip CUDA graph capture: faster start, slower decoding."
    )
    enable_prefix_caching: bool = Field(
        True, description="Reuse the KV cache of shared prompt prefixes (the system prompt)."
    )
    trust_remote_code: bool = Field(False, description="Allow model code from the hub to run.")
    engine_kwargs: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, description="Other vLLM AsyncEngineArgs, passed as they are."
    )
    prompt: PromptSettings = Field(
        default_factory=PromptSettings, description="System prompt and passage layout."
    )
    sampling: SamplingDefaults = Field(
        default_factory=SamplingDefaults, description="Default sampling parameters."
    )


class TransformersGeneratorConfig(StrictConfig):
    """Hugging Face ``generate`` with a token streamer: small chat models on CPU or one GPU.
    One answer is generated at a time per replica. Needs ``pip install 'ja-rag-serve[models]'``."""

    backend: Literal["transformers"] = Field(description="Selects this engine.")
    model: str = Field(description="Hugging Face model id or local directory of the chat model.")
    served_model_name: str | None = Field(
        None,
        description="Model id shown to API clients; default: `model` (of a path, its last part).",
    )
    revision: str | None = Field(None, description="Hub revision to pin; default: main.")
    device: Device = Field(
        "auto", description="'auto' uses a CUDA GPU when the replica has one, else the CPU."
    )
    dtype: DType = Field(
        "auto", description="Weight precision; 'auto' is float16 on GPU and float32 on CPU."
    )
    max_model_len: int = Field(
        4096, ge=64, description="Longest prompt + answer in tokens; passages are dropped to fit."
    )
    trust_remote_code: bool = Field(False, description="Allow model code from the hub to run.")
    prompt: PromptSettings = Field(
        default_factory=PromptSettings, description="System prompt and passage layout."
    )
    sampling: SamplingDefaults = Field(
        default_factory=SamplingDefaults, description="Default sampling parameters."
    )


class OpenAIGeneratorConfig(StrictConfig):
    """Any OpenAI-compatible chat endpoint (a vLLM server, Ollama, llama.cpp server, a hosted
    API): the prompt is built here, the upstream streams the answer. Needs
    ``pip install 'ja-rag-serve[openai]'``."""

    backend: Literal["openai"] = Field(description="Selects this engine.")
    base_url: str = Field(
        description="The upstream's API root, e.g. http://127.0.0.1:11434/v1 (Ollama)."
    )
    model: str = Field(description="Model id the upstream serves.")
    served_model_name: str | None = Field(
        None, description="Model id shown to API clients; default: `model`."
    )
    api_key: SecretStr | None = Field(
        None, description="API key sent as a bearer token. Prefer api_key_env: config files leak."
    )
    api_key_env: str | None = Field(
        None,
        description="Name of an environment variable of the Generator replica holding the API "
        "key (set it with ray_actor_options.runtime_env.env_vars or on the nodes).",
    )
    timeout_s: float = Field(120.0, gt=0, description="Longest wait for the upstream, per request.")
    max_retries: int = Field(
        1, ge=0, le=10, description="Retries of a failed connection before streaming starts."
    )
    stream_usage: bool = Field(
        True,
        description="Ask for token usage at the end of the stream (stream_options); turn off for "
        "upstreams that reject it.",
    )
    prompt: PromptSettings = Field(
        default_factory=PromptSettings, description="System prompt and passage layout."
    )
    sampling: SamplingDefaults = Field(
        default_factory=SamplingDefaults, description="Default sampling parameters."
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> OpenAIGeneratorConfig:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("set api_key or api_key_env, not both")
        return self

    def resolve_api_key(self) -> str:
        """The key to send; upstreams without authentication get a placeholder."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env is not None:
            value = os.environ.get(self.api_key_env)
            if not value:
                raise RuntimeError(
                    f"generator.api_key_env names {self.api_key_env!r}, which is not set in the "
                    "Generator replica's environment"
                )
            return value
        return "unused"


def served_name(model: str, served_model_name: str | None) -> str:
    """The id clients use: the configured one, a hub id as it is, or a local path's last part."""
    if served_model_name:
        return served_model_name
    if model.startswith(("/", ".", "~")):
        return os.path.basename(os.path.normpath(os.path.expanduser(model)))
    return model


GeneratorConfig = Annotated[
    Annotated[ExtractiveGeneratorConfig, Tag("extractive")]
    | Annotated[VLLMGeneratorConfig, Tag("vllm")]
    | Annotated[TransformersGeneratorConfig, Tag("transformers")]
    | Annotated[OpenAIGeneratorConfig, Tag("openai")],
    backend_discriminator("extractive"),
]
"""The generator section of the application config, chosen by ``backend``."""
