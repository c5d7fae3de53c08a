"""Input checks shared by the endpoints: sizes, emptiness, valid Unicode."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from deployments.ingress.config import IngressConfig
from deployments.ingress.errors import APIError


def check_text(text: str, config: IngressConfig, param: str) -> None:
    """Reject a blank or over-long text."""
    if not text.strip():
        raise APIError(400, f"{param} is empty", param=param)
    if len(text) > config.max_input_chars:
        raise APIError(
            400,
            f"{param} has {len(text)} characters; the limit is {config.max_input_chars}",
            param=param,
        )


def check_texts(texts: list[str], config: IngressConfig, param: str) -> None:
    """Reject empty lists, too many texts, blank or over-long ones."""
    if not texts:
        raise APIError(400, f"{param} must not be empty", param=param)
    if len(texts) > config.max_batch_inputs:
        raise APIError(
            400,
            f"{param} has {len(texts)} texts; the limit is {config.max_batch_inputs}",
            param=param,
        )
    for number, text in enumerate(texts):
        check_text(text, config, f"{param}[{number}]")


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "contains invalid Unicode (an unpaired surrogate such as \\ud800)"
        ) from None
    return value


Text = Annotated[str, AfterValidator(_encodable)]
"""A string of request JSON that is valid Unicode: JSON's \\uD800-style escapes can
carry unpaired surrogates, which no engine (nor any UTF-8 response) can take."""
