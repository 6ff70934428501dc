"""Records, business rules and rendering for the ServiceNow Table API emulator."""

from __future__ import annotations

import copy
import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from fileferry.sandbox.servicenow.query import Query
from fileferry.sandbox.servicenow.schema import TABLES, Field, Table

__all__ = ["ApiError", "Store", "now_text"]

_SYS_ID = re.compile(r"^[0-9a-f]{32}$")
_JOURNAL_LABEL = {"work_notes": "Work notes", "comments": "Additional comments"}
_PRIORITY = {("1", "1"): "1", ("1", "2"): "2", ("1", "3"): "3",
             ("2", "1"): "2", ("2", "2"): "3", ("2", "3"): "4",
             ("3", "1"): "3", ("3", "2"): "4", ("3", "3"): "5"}


class ApiError(Exception):
    """An error response: ``{"error": {"message", "detail"}, "status": "failure"}``."""

    def __init__(self, status: int, message: str, detail: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "detail": self.detail},
                "status": "failure"}


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _text(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("value", value.get("sys_id", ""))
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


class Store:
    """Thread-safe in-memory tables. Raw records hold strings only, as the instance stores them."""

    def __init__(self, strict_queries: bool = False) -> None:
        self.lock = threading.RLock()
        self.strict_queries = strict_queries
        self.rows: dict[str, dict[str, dict[str, str]]] = {name: {} for name in TABLES}
        self.counters: dict[str, int] = {name: 10000 for name in TABLES}
        self._seed_choices()

    # -- lookups ---------------------------------------------------------------------------

    @staticmethod
    def table(name: str) -> Table:
        try:
            return TABLES[name]
        except KeyError:
            raise ApiError(400, f"Invalid table {name}") from None

    def get(self, table: str, sys_id: str) -> dict[str, str] | None:
        return self.rows[table].get(sys_id)

    def resolve(self, table: str, record: dict[str, str], path: str) -> str | None:
        """The stored value of a (dot-walked) field; None when the field is unknown."""
        name, _, rest = path.partition(".")
        spec = self.table(table).fields.get(name)
        if spec is None:
            return None
        value = "" if spec.kind == "journal" else record.get(name, "")
        if not rest:
            return value
        if spec.kind != "reference":
            return None
        target = self.rows[spec.reference].get(value)
        if target is None:
            return "" if rest in TABLES[spec.reference].fields else None
        return self.resolve(spec.reference, target, rest)

    def display(self, table: str, name: str, value: str) -> str:
        spec = self.table(table).fields[name]
        if spec.kind == "choice":
            return spec.choices.get(value, value)
        if spec.kind == "reference":
            target = self.rows[spec.reference].get(value)
            if target is None:
                return ""
            return target.get(TABLES[spec.reference].display, "")
        return value

    def user_full_name(self, user_name: str) -> str:
        for user in self.rows["sys_user"].values():
            if user.get("user_name") == user_name:
                return user.get("name") or user_name
        return user_name

    def journal_text(self, table: str, sys_id: str, element: str) -> str:
        entries = [j for j in self.rows["sys_journal_field"].values()
                   if j["element_id"] == sys_id and j["name"] == table
                   and j["element"] == element]
        label = _JOURNAL_LABEL.get(element, element)
        return "".join(
            f"{j['sys_created_on']} - {self.user_full_name(j['sys_created_by'])} ({label})\n"
            f"{j['value']}\n\n"
            for j in reversed(entries)  # insertion order is creation order; newest first
        )

    def select(self, table: str, query: Query, plain: dict[str, str]) -> list[dict[str, str]]:
        def resolve(record: dict[str, str], path: str) -> str | None:
            return self.resolve(table, record, path)

        rows = [r for r in self.rows[table].values()
                if query.matches(r, resolve, self.strict_queries)
                and all(resolve(r, k) in (None, v) for k, v in plain.items())]
        return query.sort(rows, resolve)

    # -- writes ----------------------------------------------------------------------------

    def insert(self, table: str, body: dict[str, Any], user: str,
               input_display: bool = False) -> dict[str, str]:
        spec = self.table(table)
        stamp = now_text()
        requested = _text(body.get("sys_id", ""))
        if _SYS_ID.match(requested) and requested not in self.rows[table]:
            sys_id = requested
        else:
            sys_id = uuid.uuid4().hex
        record = {name: f.default for name, f in spec.fields.items() if f.kind != "journal"}
        record.update(sys_id=sys_id, sys_created_on=stamp, sys_created_by=user,
                      sys_updated_on=stamp, sys_updated_by=user, sys_mod_count="0",
                      sys_class_name=table)
        if spec.prefix:
            self.counters[table] += 1
            record["number"] = f"{spec.prefix}{self.counters[table]:07d}"
            record["opened_at"] = stamp
            record["opened_by"] = self._user_id(user)
        journal = self._apply(spec, record, body, input_display)
        self._rules(spec, record, {}, user, stamp)
        self.rows[table][sys_id] = record
        self._journal(table, sys_id, journal, user, stamp)
        return record

    def update(self, table: str, sys_id: str, body: dict[str, Any], user: str,
               input_display: bool = False) -> dict[str, str]:
        spec = self.table(table)
        current = self.rows[table].get(sys_id)
        if current is None:
            raise ApiError(404, "No Record found",
                           "Record doesn't exist or ACL restricts the record retrieval")
        record = dict(current)
        journal = self._apply(spec, record, body, input_display)
        stamp = now_text()
        self._rules(spec, record, current, user, stamp)
        record.update(sys_updated_on=stamp, sys_updated_by=user,
                      sys_mod_count=str(int(current.get("sys_mod_count") or 0) + 1))
        self.rows[table][sys_id] = record
        self._journal(table, sys_id, journal, user, stamp)
        return record

    def delete(self, table: str, sys_id: str) -> None:
        self.table(table)
        if self.rows[table].pop(sys_id, None) is None:
            raise ApiError(404, "No Record found",
                           "Record doesn't exist or ACL restricts the record retrieval")

    def _apply(self, spec: Table, record: dict[str, str], body: dict[str, Any],
               input_display: bool) -> dict[str, str]:
        journal: dict[str, str] = {}
        for name, raw in body.items():
            field = spec.fields.get(name)
            if field is None or field.system or field.read_only:
                continue  # unknown fields and system fields are ignored on writes
            value = _text(raw)
            if field.kind == "journal":
                if value:
                    journal[name] = value
            elif field.kind == "choice" and value == "":
                continue  # "" clears a field, except choice fields
            elif input_display:
                record[name] = self._from_display(spec.name, name, field, value)
            else:
                record[name] = value
        return journal

    def _from_display(self, table: str, name: str, field: Field, value: str) -> str:
        if field.kind == "choice":
            for key, label in field.choices.items():
                if value == label:
                    return key
            return value
        if field.kind != "reference" or value == "" or value in self.rows[field.reference]:
            return value
        display = TABLES[field.reference].display
        for sys_id, row in self.rows[field.reference].items():
            if row.get(display) == value:
                return sys_id
        raise ApiError(400, "Invalid display value",
                       f"{table}.{name}: no {field.reference} with {display} '{value}'")

    def _user_id(self, user_name: str) -> str:
        for sys_id, user in self.rows["sys_user"].items():
            if user.get("user_name") == user_name:
                return sys_id
        return ""

    def _rules(self, spec: Table, record: dict[str, str], before: dict[str, str], user: str,
               stamp: str) -> None:
        if spec.name == "incident":
            if record.get("incident_state") != before.get("incident_state") and \
                    record.get("state") == before.get("state", "1"):
                record["state"] = record["incident_state"]
            record["incident_state"] = record["state"]
            record["priority"] = _PRIORITY.get((record["impact"], record["urgency"]), "5")
            self._close_policy(spec, record, before, {"6", "7"}, user, stamp)
            if record["state"] in ("6", "7") and not record.get("resolved_at"):
                record["resolved_at"] = stamp
                record["resolved_by"] = self._user_id(user)
            if record["state"] in ("1", "2", "3"):
                record.update(resolved_at="", resolved_by="", closed_at="", closed_by="",
                              active="true")
            if record["state"] in ("7", "8"):
                record["active"] = "false"
        elif spec.name == "change_request":
            self._close_policy(spec, record, before, {"3"}, user, stamp)
            record["active"] = "false" if record["state"] in ("3", "4") else "true"

    def _close_policy(self, spec: Table, record: dict[str, str], before: dict[str, str],
                      closing: set[str], user: str, stamp: str) -> None:
        if record["state"] not in closing:
            return
        missing = [spec.fields[f].label for f in ("close_code", "close_notes")
                   if not record.get(f)]
        if missing:
            raise ApiError(403, "Operation Failed",
                           "Data Policy Exception: \n\tThe following fields are mandatory: "
                           + ", ".join(missing))
        if record["state"] != before.get("state") and record["state"] in ("7", "3"):
            record["closed_at"] = stamp
            record["closed_by"] = self._user_id(user)

    def _journal(self, table: str, sys_id: str, journal: dict[str, str], user: str,
                 stamp: str) -> None:
        for element, value in journal.items():
            entry_id = uuid.uuid4().hex
            self.rows["sys_journal_field"][entry_id] = {
                "sys_id": entry_id, "element_id": sys_id, "name": table, "element": element,
                "value": value, "sys_created_on": stamp, "sys_created_by": user,
                "sys_updated_on": stamp, "sys_updated_by": user, "sys_mod_count": "0",
                "sys_class_name": "sys_journal_field"}

    def _seed_choices(self) -> None:
        for table_name, table in TABLES.items():
            if table_name in ("sys_choice", "sys_journal_field"):
                continue
            for name, field in table.fields.items():
                for seq, (value, label) in enumerate(field.choices.items()):
                    self.insert("sys_choice", {
                        "name": table_name, "element": name, "value": value, "label": label,
                        "sequence": str(seq), "inactive": "false"}, "system")

    # -- rendering -------------------------------------------------------------------------

    def render(self, table: str, record: dict[str, str], base: str, fields: list[str],
               mode: str, exclude_links: bool) -> dict[str, Any]:
        spec = self.table(table)
        names = [f for f in fields if self.resolve(table, record, f) is not None] \
            if fields else [n for n in spec.fields]
        return {name: self._render_field(table, record, name, base, mode, exclude_links)
                for name in names}

    def _render_field(self, table: str, record: dict[str, str], path: str, base: str,
                      mode: str, exclude_links: bool) -> Any:
        name, _, rest = path.partition(".")
        field = self.table(table).fields[name]
        if rest:
            target = self.rows[field.reference].get(record.get(name, ""))
            if target is None:
                return "" if mode != "all" else {"display_value": "", "value": ""}
            return self._render_field(field.reference, target, rest, base, mode, exclude_links)
        value = record.get(name, "")
        if field.kind == "journal":
            shown = self.journal_text(table, record["sys_id"], name)
        else:
            shown = self.display(table, name, value)
        link = f"{base}/api/now/table/{field.reference}/{value}"
        if mode == "all":
            out: dict[str, str] = {"display_value": shown, "value": value}
            if field.kind == "reference" and value and not exclude_links:
                out["link"] = link
            return out
        if mode == "true":
            if field.kind == "reference" and value and not exclude_links:
                return {"display_value": shown, "link": link}
            return shown
        if field.kind == "reference" and value and not exclude_links:
            return {"link": link, "value": value}
        return "" if field.kind == "journal" else value

    def snapshot(self, table: str) -> list[dict[str, str]]:
        """Copies of the raw records, oldest first; unknown tables raise ``ApiError``."""
        self.table(table)
        with self.lock:
            return copy.deepcopy(list(self.rows[table].values()))
