"""The ``fileferry`` command line: a Typer app whose commands live by group.

``_common`` holds the app, the shared options and helpers; ``transfers``,
``approvals``, ``admin`` and ``chat`` register their commands on it when
imported, and so does :mod:`fileferry.automation.commands` (``run``,
``routes``, ``ledger``, ``scheduler``), which imports ``_common`` itself. Each
module's docstring says what its commands print and how they exit.
"""

from __future__ import annotations

# importing a module registers its commands on ``app``
from fileferry.automation import commands as _automation_commands  # noqa: F401
from fileferry.cli import admin, approvals, chat, transfers  # noqa: F401
from fileferry.cli._common import app, main

__all__ = ["app", "main"]

# Typer lists commands in the order they were registered, which here is the
# order of the imports above; keep the order the help has always had instead
# (sub-apps such as ``store`` come after the commands whatever the order).
_HELP_ORDER = ("transfer", "hostkey", "check", "resume", "history", "cancel", "approve",
               "reject", "demo", "list", "status", "serve", "chat")


def _rank(name: str | None) -> int:
    """A command's place in the help; those not listed follow, in registration order."""
    return _HELP_ORDER.index(name) if name in _HELP_ORDER else len(_HELP_ORDER)


app.registered_commands.sort(
    key=lambda info: _rank(info.name or getattr(info.callback, "__name__", None)))
