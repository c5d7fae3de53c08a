"""Randomly initialised models of a chosen shape, built locally (no model hub).

The batching benchmark and the test suite load them through the same calls as
production models (``SentenceTransformer(path)``, ``CrossEncoder(path)``,
``AutoModelForCausalLM.from_pretrained(path)``). Their tokenizers are trained
here, with ``tokenizers``, on the sentences of the bundled demo corpus, so they
split Japanese text much as a real vocabulary does. Their outputs mean nothing;
their cost per token is that of a real model of the same shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployments.extras import require
from deployments.text import split_sentences
from serve.demo import DEMO_CORPUS

LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
"""The Llama 3 chat format, as used by elyza/Llama-3-ELYZA-JP-8B."""


@dataclass(frozen=True)
class EncoderShape:
    """A BERT encoder's size."""

    hidden_size: int
    layers: int
    heads: int
    intermediate_size: int
    max_positions: int = 512


ENCODER_SHAPES: dict[str, EncoderShape] = {
    "tiny": EncoderShape(
        hidden_size=32, layers=2, heads=2, intermediate_size=64, max_positions=128
    ),
    "small": EncoderShape(hidden_size=256, layers=4, heads=4, intermediate_size=1024),
    # cl-nagoya/ruri-large and ruri-reranker-large: BERT-large (337M parameters).
    "ruri-large": EncoderShape(hidden_size=1024, layers=24, heads=16, intermediate_size=4096),
}


def corpus_sentences(path: Path = DEMO_CORPUS) -> list[str]:
    """Titles and sentences of a JSONL corpus (the demo's: about 1,100 sentences)."""
    sentences: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            sentences.append(record.get("title", ""))
            sentences.extend(split_sentences(record["text"]))
    return [s for s in sentences if s]


def texts_over(tokenizer: Any, sentences: list[str], tokens: int, count: int = 64) -> list[str]:
    """``count`` distinct texts of more than ``tokens`` tokens, joined from ``sentences``
    (a model set to ``tokens`` cuts every one of them to exactly that length)."""
    texts = []
    for start in range(count):
        pieces, length, i = [], 0, start
        while length <= tokens:
            sentence = sentences[i % len(sentences)]
            pieces.append(sentence)
            length += len(tokenizer.tokenize(sentence))
            i += 7
        texts.append("".join(pieces))
    return texts


def wordpiece_tokenizer(sentences: list[str], vocab_size: int = 2000) -> Any:
    """A BERT WordPiece tokenizer trained on ``sentences``."""
    tokenizers = require("tokenizers", "models", "training a tokenizer")
    transformers = require("transformers", "models", "building a tokenizer")
    t = tokenizers
    tokenizer = t.Tokenizer(t.models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = t.normalizers.BertNormalizer(
        lowercase=False, handle_chinese_chars=True, strip_accents=False
    )
    tokenizer.pre_tokenizer = t.pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(
        sentences, t.trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special)
    )
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = t.processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer.decoder = t.decoders.WordPiece()
    return transformers.BertTokenizerFast(tokenizer_object=tokenizer, model_max_length=512)


def mecab_tokenizer(directory: Path, sentences: list[str]) -> Any:
    """A ``BertJapaneseTokenizer`` that segments words with MeCab (fugashi + unidic-lite)
    like ruri v1's, with a character vocabulary of ``sentences``."""
    transformers = require("transformers", "models", "building a tokenizer")
    directory.mkdir(parents=True, exist_ok=True)
    characters = sorted({c for s in sentences for c in s if not c.isspace()})
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters]) + "\n")
    return transformers.BertJapaneseTokenizer(
        str(vocab),
        do_lower_case=False,
        word_tokenizer_type="mecab",
        subword_tokenizer_type="character",
        mecab_kwargs={"mecab_dic": "unidic_lite"},
        model_max_length=512,
    )


def bert_config(tokenizer: Any, shape: EncoderShape, **extra: Any) -> Any:
    transformers = require("transformers", "models", "building a model")
    return transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_positions,
        **extra,
    )


def build_embedder(directory: Path, tokenizer: Any, shape: EncoderShape, seed: int = 0) -> Path:
    """A sentence-transformers model (BERT + mean pooling) saved to ``directory``."""
    torch = require("torch", "models", "building a model")
    transformers = require("transformers", "models", "building a model")
    st_modules = require("sentence_transformers.models", "models", "building a model")
    st = require("sentence_transformers", "models", "building a model")
    torch.manual_seed(seed)
    encoder_dir = directory.with_name(directory.name + "-encoder")
    transformers.BertModel(bert_config(tokenizer, shape)).save_pretrained(encoder_dir)
    tokenizer.save_pretrained(encoder_dir)
    transformer = st_modules.Transformer(str(encoder_dir), max_seq_length=shape.max_positions)
    pooling = st_modules.Pooling(shape.hidden_size, "mean")
    st.SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(directory))
    return directory


def build_cross_encoder(
    directory: Path, tokenizer: Any, shape: EncoderShape, seed: int = 0
) -> Path:
    """A one-logit BERT sequence classifier (a cross-encoder) saved to ``directory``."""
    torch = require("torch", "models", "building a model")
    transformers = require("transformers", "models", "building a model")
    torch.manual_seed(seed)
    config = bert_config(tokenizer, shape, num_labels=1)
    transformers.BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_chat_model(
    directory: Path,
    sentences: list[str],
    seed: int = 0,
    hidden_size: int = 32,
    heads: int = 2,
    dtype: str = "float32",
    kv_heads: int | None = None,
) -> Path:
    """A tiny Llama causal LM with a byte-level BPE tokenizer and the Llama 3 chat template.
    (vLLM's attention kernels, on GPU and CPU, want a head size of 64 or more: hidden_size
    128, heads 2; ``kv_heads`` below ``heads`` gives grouped-query attention, as Llama 3 has.)"""
    torch = require("torch", "models", "building a model")
    transformers = require("transformers", "models", "building a model")
    t = require("tokenizers", "models", "training a tokenizer")
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>"]
    specials += ["<|end_header_id|>", "<|eot_id|>"]
    bpe = t.Tokenizer(t.models.BPE())
    bpe.pre_tokenizer = t.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = t.decoders.ByteLevel()
    bpe.train_from_iterator(
        sentences,
        t.trainers.BpeTrainer(
            vocab_size=1000,
            special_tokens=specials,
            initial_alphabet=t.pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
        model_max_length=2048,
    )
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = transformers.LlamaForCausalLM(config).to(getattr(torch, dtype))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
