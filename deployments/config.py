"""The base every typed configuration in the project derives from."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Discriminator


class StrictConfig(BaseModel):
    """A configuration block: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def backend_discriminator(default: str) -> Discriminator:
    """Chooses a stage's config class by its ``backend`` key; a block without one gets
    ``default`` (the built-in engine), so configs written before a stage had several
    backends stay valid."""

    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            return str(value.get("backend", default))
        backend = getattr(value, "backend", None)
        return None if backend is None else str(backend)

    return Discriminator(tag)
