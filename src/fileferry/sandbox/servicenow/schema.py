"""Table definitions for the ServiceNow emulator: fields, choices and display fields."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TABLES", "Field", "Table"]


@dataclass(frozen=True)
class Field:
    kind: str = "string"  # string | reference | choice | journal | datetime | integer | boolean
    reference: str = ""
    choices: dict[str, str] = field(default_factory=dict)
    default: str = ""
    label: str = ""
    system: bool = False  # set by the server; writes are ignored
    read_only: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    fields: dict[str, Field]
    display: str
    prefix: str = ""


IMPACT = {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"}
PRIORITY = {"1": "1 - Critical", "2": "2 - High", "3": "3 - Moderate", "4": "4 - Low",
            "5": "5 - Planning"}
INCIDENT_STATE = {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved",
                  "7": "Closed", "8": "Canceled"}
HOLD_REASON = {"1": "Awaiting Caller", "3": "Awaiting Problem", "4": "Awaiting Vendor",
               "5": "Awaiting Change"}
CLOSE_CODES = ["Duplicate", "Known error", "No resolution provided", "Resolved by caller",
               "Resolved by change", "Resolved by problem", "Resolved by request",
               "Solution provided", "Workaround provided", "User error"]
CATEGORY = {c: c.capitalize() for c in ("inquiry", "software", "hardware", "network",
                                        "database")}
CONTACT_TYPE = {c: c.replace("_", " ").capitalize() for c in (
    "chat", "email", "phone", "monitoring", "self-service", "virtual_agent", "walk-in")}
CHANGE_STATE = {"-5": "New", "-4": "Assess", "-3": "Authorize", "-2": "Scheduled",
                "-1": "Implement", "0": "Review", "3": "Closed", "4": "Canceled"}
CHANGE_TYPE = {"normal": "Normal", "standard": "Standard", "emergency": "Emergency"}
CHANGE_CLOSE = {"successful": "Successful", "successful_issues": "Successful with issues",
                "unsuccessful": "Unsuccessful"}

_SYSTEM = {
    "sys_id": Field(system=True, label="Sys ID"),
    "sys_created_on": Field(kind="datetime", system=True, label="Created"),
    "sys_created_by": Field(system=True, label="Created by"),
    "sys_updated_on": Field(kind="datetime", system=True, label="Updated"),
    "sys_updated_by": Field(system=True, label="Updated by"),
    "sys_mod_count": Field(kind="integer", system=True, label="Updates"),
    "sys_class_name": Field(system=True, label="Class"),
}


def _task(**extra: Field) -> dict[str, Field]:
    fields = dict(_SYSTEM)
    fields.update(
        number=Field(system=True, label="Number"),
        short_description=Field(label="Short description"),
        description=Field(label="Description"),
        assignment_group=Field(kind="reference", reference="sys_user_group",
                               label="Assignment group"),
        assigned_to=Field(kind="reference", reference="sys_user", label="Assigned to"),
        impact=Field(kind="choice", choices=IMPACT, default="3", label="Impact"),
        urgency=Field(kind="choice", choices=IMPACT, default="3", label="Urgency"),
        priority=Field(kind="choice", choices=PRIORITY, default="5", label="Priority",
                       read_only=True),
        active=Field(kind="boolean", default="true", label="Active"),
        close_notes=Field(label="Close notes"),
        closed_at=Field(kind="datetime", label="Closed"),
        closed_by=Field(kind="reference", reference="sys_user", label="Closed by"),
        opened_at=Field(kind="datetime", label="Opened"),
        opened_by=Field(kind="reference", reference="sys_user", label="Opened by"),
        correlation_id=Field(label="Correlation ID"),
        correlation_display=Field(label="Correlation display"),
        work_notes=Field(kind="journal", label="Work notes"),
        comments=Field(kind="journal", label="Additional comments"),
    )
    fields.update(extra)
    return fields


TABLES: dict[str, Table] = {
    "incident": Table("incident", _task(
        caller_id=Field(kind="reference", reference="sys_user", label="Caller"),
        state=Field(kind="choice", choices=INCIDENT_STATE, default="1", label="State"),
        incident_state=Field(kind="choice", choices=INCIDENT_STATE, default="1",
                             label="Incident state"),
        hold_reason=Field(kind="choice", choices=HOLD_REASON, label="On hold reason"),
        close_code=Field(kind="choice", choices={c: c for c in CLOSE_CODES},
                         label="Resolution code"),
        resolved_at=Field(kind="datetime", label="Resolved"),
        resolved_by=Field(kind="reference", reference="sys_user", label="Resolved by"),
        category=Field(kind="choice", choices=CATEGORY, default="inquiry", label="Category"),
        subcategory=Field(label="Subcategory"),
        contact_type=Field(kind="choice", choices=CONTACT_TYPE, label="Channel"),
    ), display="number", prefix="INC"),
    "change_request": Table("change_request", _task(
        type=Field(kind="choice", choices=CHANGE_TYPE, default="normal", label="Type"),
        state=Field(kind="choice", choices=CHANGE_STATE, default="-5", label="State"),
        close_code=Field(kind="choice", choices=CHANGE_CLOSE, label="Close code"),
        requested_by=Field(kind="reference", reference="sys_user", label="Requested by"),
        start_date=Field(kind="datetime", label="Planned start date"),
        end_date=Field(kind="datetime", label="Planned end date"),
    ), display="number", prefix="CHG"),
    "sys_user": Table("sys_user", dict(
        _SYSTEM,
        user_name=Field(label="User ID"), name=Field(label="Name"),
        first_name=Field(label="First name"), last_name=Field(label="Last name"),
        email=Field(label="Email"), title=Field(label="Title"),
        active=Field(kind="boolean", default="true", label="Active"),
    ), display="name"),
    "sys_user_group": Table("sys_user_group", dict(
        _SYSTEM,
        name=Field(label="Name"), description=Field(label="Description"),
        email=Field(label="Group email"),
        manager=Field(kind="reference", reference="sys_user", label="Manager"),
        active=Field(kind="boolean", default="true", label="Active"),
    ), display="name"),
    "sys_choice": Table("sys_choice", dict(
        _SYSTEM,
        name=Field(label="Table"), element=Field(label="Element"),
        value=Field(label="Value"), label=Field(label="Label"),
        sequence=Field(kind="integer", default="0", label="Sequence"),
        language=Field(default="en", label="Language"),
        inactive=Field(kind="boolean", default="false", label="Inactive"),
    ), display="label"),
    "sys_journal_field": Table("sys_journal_field", dict(
        _SYSTEM,
        element_id=Field(label="Element ID"), name=Field(label="Table"),
        element=Field(label="Element"), value=Field(label="Value"),
    ), display="value"),
}
