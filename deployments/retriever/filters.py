"""Metadata filters: which passages a search may return, by their metadata fields.

The operators are Dify's (its External Knowledge API sends them in
``metadata_condition``). A condition holds for a passage when it holds for any of the
fields it names. A field the passage lacks (or whose value is null) satisfies only
``empty`` and the negations (``not contains``, ``is not``, ``not in``, ``≠``): "does not
contain X" is true of a passage that has no such field. Numbers compare as numbers
(``=``, ``≠``, ``>``, ``<``, ``≥``, ``≤``; a value that is not a number satisfies only
``≠``); dates (``before``, ``after``) are ISO 8601 strings (a date alone is midnight,
a time without offset is UTC) or Unix timestamps in seconds, on either side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, get_args

from deployments.passage import Metadata, MetadataValue

Operator = Literal[
    "contains",
    "not contains",
    "start with",
    "end with",
    "is",
    "is not",
    "in",
    "not in",
    "empty",
    "not empty",
    "=",
    "≠",
    ">",
    "<",
    "≥",
    "≤",
    "before",
    "after",
]
OPERATORS: tuple[str, ...] = get_args(Operator)
_NEGATIONS = frozenset({"not contains", "is not", "not in", "≠"})
_NUMERIC = frozenset({"=", "≠", ">", "<", "≥", "≤"})
_DATES = frozenset({"before", "after"})
_ASCII_ALIASES = {"!=": "≠", ">=": "≥", "<=": "≤"}

ConditionValue = str | float | tuple[str, ...] | None


class InvalidFilter(ValueError):
    """A condition that cannot be evaluated (a missing or malformed value)."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One test on the metadata fields ``names``."""

    names: tuple[str, ...]
    operator: str
    value: ConditionValue = None

    @classmethod
    def create(
        cls,
        names: str | Sequence[str],
        operator: str,
        value: str | float | Sequence[str] | None = None,
    ) -> Condition:
        """A checked condition: the operator known, the value of the kind it needs."""
        operator = _ASCII_ALIASES.get(operator, operator)
        fields = (names,) if isinstance(names, str) else tuple(names)
        if not fields or not all(fields):
            raise InvalidFilter("a condition must name a metadata field")
        if operator not in OPERATORS:
            raise InvalidFilter(
                f"unknown comparison_operator {operator!r}; known: {', '.join(OPERATORS)}"
            )
        if operator in ("empty", "not empty"):
            return cls(fields, operator, None)
        if value is None:
            raise InvalidFilter(f"comparison_operator {operator!r} needs a value")
        if operator in ("in", "not in"):
            items = (value,) if isinstance(value, (str, int, float)) else tuple(value)
            return cls(fields, operator, tuple(str(v) for v in items))
        if isinstance(value, (list, tuple)):
            raise InvalidFilter(f"comparison_operator {operator!r} takes one value, not a list")
        if operator in _NUMERIC:
            number = _number(value)
            if number is None:
                raise InvalidFilter(f"comparison_operator {operator!r} needs a number")
            return cls(fields, operator, number)
        if operator in _DATES:
            moment = _timestamp(value)
            if moment is None:
                raise InvalidFilter(
                    f"comparison_operator {operator!r} needs a date (ISO 8601 or Unix seconds)"
                )
            return cls(fields, operator, moment)
        return cls(fields, operator, str(value))

    def holds(self, metadata: Metadata) -> bool:
        return any(self._holds_for(metadata.get(name)) for name in self.names)

    def _holds_for(self, field: MetadataValue) -> bool:
        op = self.operator
        if op == "empty":
            return field is None or field == ""
        if op == "not empty":
            return not (field is None or field == "")
        if field is None:
            return op in _NEGATIONS
        if op in _NUMERIC:
            return _compare_numbers(op, _number(field), self.value)
        if op in _DATES:
            moment = _timestamp(field)
            if moment is None or not isinstance(self.value, float):
                return False
            return moment < self.value if op == "before" else moment > self.value
        text = _text(field)
        if op in ("in", "not in"):
            assert isinstance(self.value, tuple)
            return (text in self.value) == (op == "in")
        wanted = str(self.value)
        if op == "contains":
            return wanted in text
        if op == "not contains":
            return wanted not in text
        if op == "start with":
            return text.startswith(wanted)
        if op == "end with":
            return text.endswith(wanted)
        if op == "is":
            return text == wanted
        return text != wanted  # "is not"


@dataclass(frozen=True, slots=True)
class MetadataFilter:
    """Conditions joined by ``and`` (all must hold) or ``or`` (one must)."""

    conditions: tuple[Condition, ...]
    logical_operator: Literal["and", "or"] = "and"

    def matches(self, metadata: Metadata) -> bool:
        if not self.conditions:
            return True
        tests = (c.holds(metadata) for c in self.conditions)
        return any(tests) if self.logical_operator == "or" else all(tests)


def _text(value: MetadataValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _compare_numbers(op: str, field: float | None, value: ConditionValue) -> bool:
    if field is None or not isinstance(value, float):
        return op == "≠"
    if op == "=":
        return field == value
    if op == "≠":
        return field != value
    if op == ">":
        return field > value
    if op == "<":
        return field < value
    if op == "≥":
        return field >= value
    return field <= value  # "≤"


def _timestamp(value: object) -> float | None:
    """Unix seconds of a number, or of an ISO 8601 date or date-time (UTC unless the
    text gives an offset)."""
    number = _number(value)
    if number is not None:
        return number
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
