"""The reader of CDK context: typed, validated values, and the one error a wrong value raises.

Every section of the settings reads its keys through a ``Context``; a wrong value raises ``SettingsError``
naming the key, the value and what is allowed, so ``cdk synth`` stops before any resource is defined.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# An ML instance type as SageMaker names them: ml.<family>.<size>, e.g. ml.p4de.24xlarge, ml.g5.xlarge.
ML_INSTANCE_TYPE = re.compile(r"^ml\.[a-z][a-z0-9-]*\.[a-z0-9]+$")


class SettingsError(ValueError):
    """A context value that cannot be used; the message names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(
            f"context key '{key}' has value {value!r}; allowed: {allowed} "
            f"(set it in cdk.json or with `cdk synth -c {key}=...`)"
        )


class Context:
    """Reads and validates typed values from CDK context (a construct's node or a plain mapping)."""

    def __init__(self, lookup: Callable[[str], Any]) -> None:
        self._lookup = lookup

    @classmethod
    def of(cls, source: Any) -> Context:
        """Wrap a construct (its node's context), a construct node, or a plain mapping of context values."""
        if isinstance(source, Context):
            return source
        if isinstance(source, Mapping):
            return cls(source.get)
        node = getattr(source, "node", source)
        return cls(node.try_get_context)

    def raw(self, key: str) -> Any:
        """The value for ``key``; a missing key is an error because cdk.json defaults every key."""
        value = self._lookup(key)
        if value is None:
            raise SettingsError(key, None, "a value; every key is defaulted in cdk.json's context")
        return value

    def text(
        self,
        key: str,
        pattern: re.Pattern[str] | None = None,
        allowed: str = "a string",
        allow_empty: bool = False,
    ) -> str:
        """A string, optionally matching ``pattern``; ``allowed`` describes the pattern to the user."""
        value = self.raw(key)
        if not isinstance(value, str):
            raise SettingsError(key, value, allowed)
        if value == "" and allow_empty:
            return value
        if pattern is not None and not pattern.fullmatch(value):
            raise SettingsError(key, value, allowed + (" or empty" if allow_empty else ""))
        return value

    def integer(self, key: str, minimum: int | None = None, maximum: int | None = None) -> int:
        """An integer within [minimum, maximum]; strings of digits (from ``-c key=3``) are accepted."""
        value = self.raw(key)
        bounds = (
            f"an integer{'' if minimum is None else f' >= {minimum}'}"
            f"{'' if maximum is None else f' and <= {maximum}'}"
        )
        number = _as_int(value)
        if (
            number is None
            or (minimum is not None and number < minimum)
            or (maximum is not None and number > maximum)
        ):
            raise SettingsError(key, value, bounds)
        return number

    def number(self, key: str, minimum: float | None = None, maximum: float | None = None) -> float:
        """A real number within [minimum, maximum]; numeric strings are accepted."""
        value = self.raw(key)
        bounds = (
            f"a number{'' if minimum is None else f' >= {minimum}'}"
            f"{'' if maximum is None else f' and <= {maximum}'}"
        )
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if (
            number is None
            or number != number
            or (minimum is not None and number < minimum)
            or (maximum is not None and number > maximum)
        ):
            raise SettingsError(key, value, bounds)
        return number

    def boolean(self, key: str) -> bool:
        """A boolean; the strings "true" and "false" (from ``-c key=false``) are accepted."""
        value = self.raw(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise SettingsError(key, value, "true or false")

    def choice(self, key: str, choices: Sequence[Any]) -> Any:
        """One of ``choices`` (compared after integer coercion when the choices are integers)."""
        value = self.raw(key)
        candidate = _as_int(value) if all(isinstance(c, int) for c in choices) else value
        if candidate is None or candidate not in choices:
            raise SettingsError(key, value, "one of " + ", ".join(str(c) for c in choices))
        return candidate

    def ml_instance_type(self, key: str) -> str:
        """A SageMaker instance type such as ml.g5.xlarge."""
        return self.text(
            key, ML_INSTANCE_TYPE, "a SageMaker instance type like ml.g5.xlarge (ml.<family>.<size>)"
        )

    def json_value(self, key: str) -> Any:
        """The value as cdk.json holds it, or decoded from the JSON string that ``-c key='...'`` passes."""
        value = self.raw(key)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                pass
        return value

    def string_map(self, key: str, name_pattern: re.Pattern[str], allowed: str) -> dict[str, str]:
        """A JSON object of names matching ``name_pattern`` to scalars, as strings (booleans as JSON)."""
        value = self.json_value(key)
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and name_pattern.fullmatch(k) and isinstance(v, (str, int, float, bool))
            for k, v in value.items()
        ):
            raise SettingsError(key, value, allowed)
        return {k: json.dumps(v) if isinstance(v, bool) else str(v) for k, v in value.items()}

    def number_range(
        self, key: str, minimum: float, maximum: float | None = None, integer: bool = False
    ) -> tuple[float, float]:
        """A [low, high] pair with minimum <= low < high <= maximum."""
        value = self.json_value(key)
        kinds = (int,) if integer else (int, float)
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, kinds) and not isinstance(v, bool) for v in value)
            and minimum <= value[0] < value[1]
            and (maximum is None or value[1] <= maximum)
        ):
            raise SettingsError(
                key,
                value,
                f"[low, high] {'integers' if integer else 'numbers'} with "
                f"{minimum} <= low < high{'' if maximum is None else f' <= {maximum}'}",
            )
        return value[0], value[1]

    def retired(self, key: str, instead: str) -> None:
        """A key this app no longer reads must not be set: say what replaced it."""
        value = self._lookup(key)
        if value is not None:
            raise SettingsError(key, value, f"nothing: this setting is retired, use {instead}")

    def require(self, condition: bool, key: str, value: Any, allowed: str) -> None:
        """A cross-field check: raise a SettingsError on ``key`` unless ``condition`` holds."""
        if not condition:
            raise SettingsError(key, value, allowed)


def _as_int(value: Any) -> int | None:
    """``value`` as an int when it is one (or a string of one); booleans and floats are not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None
