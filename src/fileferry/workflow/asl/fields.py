"""Reading one JSON object of a definition, field by field, with errors naming the field.

Every getter marks its key as used; ``finish`` then rejects whatever is left,
saying "not supported" for the ASL features the interpreter knows it lacks and
"unknown field" for everything else.
"""

from __future__ import annotations

from typing import Any, Final

from fileferry.workflow.asl.errors import AslDefinitionError
from fileferry.workflow.asl.paths import ROOT, JsonPath, ReferencePath

__all__ = ["MISSING", "UNSUPPORTED", "Fields"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
MAX_SECONDS = 99_999_999

UNSUPPORTED: dict[str, str] = {
    "Credentials": "cross-account task credentials",
    "HeartbeatSeconds": "task heartbeats (.waitForTaskToken callbacks)",
    "HeartbeatSecondsPath": "task heartbeats (.waitForTaskToken callbacks)",
    "Assign": "workflow variables",
    "Arguments": "JSONata states",
    "Output": "JSONata states",
    "Items": "JSONata Map states",
    "ItemReader": "Distributed Map",
    "ItemBatcher": "Distributed Map",
    "ResultWriter": "Distributed Map",
    "Label": "Distributed Map",
    "ToleratedFailurePercentage": "Distributed Map",
    "ToleratedFailurePercentagePath": "Distributed Map",
    "ToleratedFailureCount": "Distributed Map",
    "ToleratedFailureCountPath": "Distributed Map",
}


class Fields:
    """One object of the definition found at ``where`` (``""`` for the top level)."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, dict):
            raise AslDefinitionError(f"{where or 'definition'}: must be a JSON object")
        self.raw: dict[str, Any] = raw
        self.where = where
        self._used: set[str] = set()

    def at(self, key: str) -> str:
        """The dotted name of ``key``, e.g. ``States.Copy.Retry``."""
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str, message: str) -> AslDefinitionError:
        return AslDefinitionError(f"{self.at(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.raw

    def get(self, key: str, *, required: bool = False) -> Any:
        """The raw value, or MISSING; ``required`` makes absence an error."""
        self._used.add(key)
        if key not in self.raw:
            if required:
                raise self.error(key, "is required")
            return MISSING
        return self.raw[key]

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.get(key, required=required)
        if value is MISSING:
            return None
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        return value

    def integer(self, key: str, low: int = 0, high: int = MAX_SECONDS) -> int | None:
        value = self.get(key)
        if value is MISSING:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(key, f"must be an integer, got {value!r}")
        if not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}, got {value}")
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.get(key)
        if value is MISSING:
            return None
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def array(self, key: str, *, required: bool = False) -> list[Any] | None:
        value = self.get(key, required=required)
        if value is MISSING:
            return None
        if not isinstance(value, list) or not value:
            raise self.error(key, "must be a non-empty array")
        return value

    def path(self, key: str, *, nullable: bool = True) -> JsonPath | None:
        """A Path field defaulting to ``$``; JSON null gives None (meaning ``{}``)."""
        value = self.get(key)
        if value is MISSING:
            return ROOT
        if value is None and nullable:
            return None
        return JsonPath.compile(value, self.at(key))

    def optional_path(self, key: str) -> JsonPath | None:
        """A Path field without default (``SecondsPath``, ``ErrorPath``...)."""
        value = self.get(key)
        return None if value is MISSING else JsonPath.compile(value, self.at(key))

    def result_path(self, key: str = "ResultPath") -> ReferencePath | None:
        """``ResultPath``: default ``$``; null (None) keeps the raw input."""
        value = self.get(key)
        if value is None:
            return None
        return ReferencePath.compile("$" if value is MISSING else value, self.at(key))

    def exclusive(self, *keys: str) -> None:
        """At most one of ``keys`` may be present."""
        present = [k for k in keys if k in self.raw]
        if len(present) > 1:
            raise self.error(present[1], f"cannot be used together with {present[0]}")

    def finish(self) -> None:
        """Reject every field no getter asked for."""
        for key in self.raw:
            if key in self._used:
                continue
            if key in UNSUPPORTED:
                raise self.error(key, f"is not supported by the local interpreter "
                                      f"({UNSUPPORTED[key]})")
            raise self.error(key, "unknown field")
