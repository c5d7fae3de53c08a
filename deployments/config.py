"""The base every typed configuration in the project derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictConfig(BaseModel):
    """A configuration block: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
