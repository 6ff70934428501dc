"""``fileferry chat``: one message a line from stdin, the agent's replies on stdout.

On a terminal it greets, prompts and draws transfer progress (stderr); through a
pipe it prints plain text, or with ``--json`` one ``ChatReply`` JSON line per
message. Object names are printed without markup (they are data). A confirmed
transfer runs in this process to the end (``InlineLauncher``). ``quit``,
``exit`` or the end of input ends the chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections.abc import Iterator
from typing import TextIO

from fileferry.agent.chat import ChatAgent, ChatReply, make_agent, render_plan
from fileferry.agent.launch import InlineLauncher
from fileferry.config import Settings
from fileferry.identity.principal import Principal
from fileferry.models import TransferResult
from fileferry.services import submit_transfer
from fileferry.store import Store, open_store
from fileferry.transfer.engine import TransferRequest
from fileferry.transfer.progress import ProgressSubscriber

__all__ = ["TerminalLauncher", "offline_settings", "print_reply", "print_reply_rich",
           "run_chat"]

QUIT = {"quit", "exit", ":q", "bye"}


def offline_settings(settings: Settings) -> Settings:
    """The same settings with no Bedrock model (``--offline``)."""
    agent = settings.agent.model_copy(update={"model_id": None})
    return settings.model_copy(update={"agent": agent})


class TerminalLauncher(InlineLauncher):
    """Runs the transfer here, with progress bars while it runs (on a terminal)."""

    def __init__(self, settings: Settings, bars: bool) -> None:
        super().__init__(settings)
        self._bars = bars

    @contextlib.contextmanager
    def _progress(self) -> Iterator[list[ProgressSubscriber]]:
        if not self._bars:
            yield []
            return
        from fileferry.console import ProgressBars

        with ProgressBars() as bars:
            yield [bars]

    async def _submit(self, request: TransferRequest, principal: Principal) -> TransferResult:
        with self._progress() as subscribers:
            return await submit_transfer(self._settings, request, subscribers,
                                         principal=principal, wait_for_approval=False)


def print_reply(reply: ChatReply, out: TextIO, as_json: bool) -> None:
    """Plain text (or one JSON line) for pipes."""
    if as_json:
        out.write(reply.model_dump_json() + "\n")
    else:
        lines = [reply.text] + (render_plan(reply.plan) if reply.plan else [])
        out.write("\n".join(lines) + "\n")
    out.flush()


def print_reply_rich(reply: ChatReply, out: TextIO) -> None:
    """On a terminal: the answer, and the plan as a table. Every string from the tools
    goes in as ``Text`` (never markup): ``[red]`` in an object name stays literal."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out, soft_wrap=True, highlight=False)
    console.print(Text("ferry> ", style="bold cyan") + Text(reply.text))
    plan = reply.plan
    if plan is None:
        return
    table = Table(title=Text(f"Plan {plan['plan_id']}: {plan['count']} file(s), "
                             f"{plan['total_size']} to {plan['destination']}"),
                  title_justify="left")
    for column in ("source", "target", "bytes"):
        table.add_column(column, overflow="fold", justify="right" if column == "bytes"
                         else "left")
    for f in plan["files"]:
        table.add_row(Text(f["source"]), Text(f["target"]), Text(str(f["size"])))
    console.print(table)
    for line in render_plan(plan)[2 + len(plan["files"]):]:
        console.print(Text(line.strip()))


async def _read_line(stdin: TextIO) -> str | None:
    line = await asyncio.to_thread(stdin.readline)
    return line if line else None


async def run_chat(settings: Settings, principal: Principal, session_id: str | None = None,
                   *, as_json: bool = False, stdin: TextIO = sys.stdin,
                   out: TextIO = sys.stdout) -> int:
    """The chat loop; returns the exit code (0)."""
    tty = stdin.isatty() and out.isatty() and not as_json
    store: Store | None = open_store(settings.store.url) \
        if settings.agent.persist_conversations else None
    agent: ChatAgent = make_agent(settings, TerminalLauncher(settings, bars=tty), store=store)
    session = session_id or "cli-" + secrets.token_hex(6)
    if tty:
        mode = f"Bedrock {settings.agent.model_id}" if settings.agent.bedrock else "offline"
        out.write(f"FileFerry chat ({mode}, as {principal.user}, session {session}); "
                  "'help' lists what I understand, 'quit' ends.\n")
    try:
        while True:
            if tty:
                out.write("you> ")
                out.flush()
            line = await _read_line(stdin)
            if line is None or line.strip().lower() in QUIT:
                return 0
            if not line.strip():
                continue
            reply = await agent.send(session, principal, line)
            if tty:
                print_reply_rich(reply, out)
            else:
                print_reply(reply, out, as_json)
    finally:
        if store is not None:
            await store.close()
