"""Naming templates: the remote name of each file of a route, and of its trigger file.

A template is a ``str.format`` string over a fixed set of fields, checked
when the configuration loads (unknown fields, ``!r`` conversions, attribute
or index access, and bad format specs are refused with the field named)::

    {key}          the whole object key            outbound/2026/report.csv
    {path}         the key below the route prefix  2026/report.csv   (the default)
    {dir}          {path}'s directory, or ""       2026
    {name}         the base name                   report.csv
    {stem} {ext}   the base name split at its last dot (".profile" has no ext)
    {date}         the run's time in the route's time zone; strftime spec,
                   default %Y%m%d: {date:%Y-%m-%d_%H%M}
    {transfer_id}  the transfer carrying the file
    {seq}          the route's delivery counter (1, 2, ...); int spec: {seq:06d}
    {route}        the route's name

Trigger file names take ``{date}``, ``{transfer_id}``, ``{seq}`` (the first
file's), ``{route}`` and ``{count}`` (files in the batch). The rendered name
is relative to the route's destination directory and confined to it later
(``paths.target_path``); a literal absolute path or ``..`` is refused here.
"""

from __future__ import annotations

import posixpath
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["FILE_FIELDS", "TRIGGER_FIELDS", "FileFacts", "check_template", "file_fields",
           "render"]

FILE_FIELDS = frozenset({"key", "path", "dir", "name", "stem", "ext", "date", "transfer_id",
                         "seq", "route"})
TRIGGER_FIELDS = frozenset({"date", "transfer_id", "seq", "route", "count"})
DEFAULT_DATE = "%Y%m%d"


class _Date:
    """A datetime whose empty format spec means ``%Y%m%d`` (not ``str(datetime)``)."""

    def __init__(self, when: datetime) -> None:
        self.when = when

    def __format__(self, spec: str) -> str:
        return self.when.strftime(spec or DEFAULT_DATE)


@dataclass(frozen=True)
class FileFacts:
    """What a file's name may be built from."""

    key: str
    prefix: str


def file_fields(facts: FileFacts) -> dict[str, str]:
    path = facts.key[len(facts.prefix):] if facts.key.startswith(facts.prefix) else facts.key
    name = posixpath.basename(facts.key)
    stem, ext = posixpath.splitext(name)
    return {"key": facts.key, "path": path, "dir": posixpath.dirname(path), "name": name,
            "stem": stem, "ext": ext}


_SAMPLE: dict[str, Any] = {"key": "in/2026/report.csv", "path": "2026/report.csv",
                           "dir": "2026", "name": "report.csv", "stem": "report", "ext": ".csv",
                           "date": _Date(datetime(2026, 11, 28, 2, 0, tzinfo=UTC)),
                           "transfer_id": "tr-0123456789abcdef", "seq": 7, "route": "nightly",
                           "count": 3}


def _fields_of(template: str) -> Iterable[tuple[str, str | None, str | None]]:
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is not None:
            yield field, spec, conversion


def check_template(template: str, allowed: frozenset[str]) -> str:
    """Return ``template`` if it renders with ``allowed`` fields; else ValueError saying why."""
    if not template.strip():
        raise ValueError("the template is empty")
    try:
        fields = list(_fields_of(template))
    except ValueError as exc:
        raise ValueError(f"{template!r} is not a valid template ({exc}); write literal braces "
                         "as {{ and }}") from None
    known = ", ".join("{" + f + "}" for f in sorted(allowed))
    for field, spec, conversion in fields:
        if field not in allowed:
            shown = field or "{}"
            raise ValueError(f"unknown field {{{shown}}} in {template!r}; known fields: {known}")
        if conversion:
            raise ValueError(f"{{{field}!{conversion}}}: conversions are not supported")
        if spec and "{" in spec:
            raise ValueError(f"{{{field}}}: nested fields in a format spec are not supported")
    try:
        sample = template.format_map({k: v for k, v in _SAMPLE.items() if k in allowed})
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{template!r} does not render: {exc}") from None
    if sample.startswith("/") or ".." in sample.split("/"):
        raise ValueError(f"{template!r} must give a path relative to the destination "
                         "directory, without '..'")
    if sample.endswith("/"):
        raise ValueError(f"{template!r} names a directory, not a file")
    return template


def render(template: str, fields: Mapping[str, Any], when: datetime) -> str:
    """The name ``template`` gives for ``fields`` (``date`` comes from ``when``)."""
    return template.format_map({**fields, "date": _Date(when)})
