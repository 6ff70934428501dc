"""What the CLI shows a person: progress bars on stderr, result tables, error lines."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from fileferry.models import FilePlan, FileResult, TransferResult

__all__ = ["ProgressBars", "human_size", "print_result", "print_transfer", "print_transfers",
           "stderr", "stdout"]

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _label(key: str, width: int) -> str:
    """The last part of an object key, cut to ``width``, as Rich markup that shows it as it is.

    Escaped after cutting, so a cut never splits an escape: ``data[red].csv`` and
    ``[bold]x`` are shown literally instead of being read as styles (or failing on a
    closing tag such as ``[/x]`` that nothing opened).
    """
    return escape(key.rsplit("/", 1)[-1][:width])


class ProgressBars:
    """A ``ProgressSubscriber`` drawing one bar per file and one in total, on stderr.

    Labels are markup (the status colours); object names in them are escaped.
    """

    def __init__(self, console: Console = stderr) -> None:
        self._progress = Progress(TextColumn("{task.description}", justify="left"),
                                  BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                  TimeRemainingColumn(), console=console, transient=False)
        self._tasks: dict[str, TaskID] = {}
        self._total: TaskID | None = None

    def __enter__(self) -> ProgressBars:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def plan(self, total: int) -> None:
        self._total = self._progress.add_task("[bold]total", total=total)

    def file_started(self, plan: FilePlan) -> None:
        if self._total is None:
            self._total = self._progress.add_task("[bold]total", total=None)
        self._tasks[plan.source] = self._progress.add_task(_label(plan.key, 40), total=plan.size)

    def bytes_moved(self, plan: FilePlan, count: int) -> None:
        self._progress.advance(self._tasks[plan.source], count)
        if self._total is not None:
            self._progress.advance(self._total, count)

    def file_retrying(self, plan: FilePlan, attempt: int, error: str) -> None:
        self._progress.update(self._tasks[plan.source],
                              description=f"{_label(plan.key, 30)} [yellow](retry {attempt})")

    def file_resumed(self, plan: FilePlan, offset: int) -> None:
        task = self._tasks[plan.source]
        done = next(t.completed for t in self._progress.tasks if t.id == task)
        self._progress.update(task, completed=offset)
        if self._total is not None:
            self._progress.advance(self._total, offset - done)

    def file_finished(self, result: FileResult) -> None:
        task = self._tasks.get(result.source)
        if task is not None and result.status != "DELIVERED":
            self._progress.update(task, description=f"[red]{result.status.lower()}")


def _short(digest: str | None) -> str:
    return f"{digest[:12]}…" if digest else "-"


def print_result(result: TransferResult, console: Console = stdout,
                 plan_only: bool = False, errors: Console = stderr) -> None:
    """A table of files (full detail is in ``--json``), then one summary line."""
    if result.files:
        title = "plan (nothing moved)" if plan_only else f"transfer {result.transfer_id}"
        table = Table(title=title, title_justify="left")
        table.add_column("destination", overflow="fold")
        table.add_column("size", justify="right", no_wrap=True)
        if not plan_only:
            table.add_column("sha256", no_wrap=True)
        table.add_column("check" if plan_only else "verified by", no_wrap=True)
        for f in result.files:
            row = [escape(f.destination), human_size(f.size)]
            if not plan_only:
                row.append(_short(f.sha256))
            status = "" if f.status in ("DELIVERED", "PLANNED") else f" ({f.status.lower()})"
            row.append((f.verified_by or "-") + status)
            table.add_row(*row)
        console.print(table)
    total = human_size(sum(f.size for f in result.files))
    if result.error:
        errors.print(f"[red]{result.status.lower()}[/red]: {escape(result.error['type'])}: "
                     f"{escape(result.error['message'])}", highlight=False)
    elif plan_only:
        console.print(f"dry run: {len(result.files)} file(s), {total}; nothing was moved")
    elif result.status == "PENDING_APPROVAL":
        console.print(f"[yellow]pending approval[/yellow]: {result.transfer_id} waits for "
                      f"`fileferry approve {result.transfer_id}` by its policy's group")
    else:
        console.print(f"[green]delivered[/green] {len(result.files)} file(s), {total}, "
                      "every one verified")
    if result.tickets:
        line = f"tickets: user {result.tickets.get('user')}, audit {result.tickets.get('audit')}"
        if result.tickets_pending:
            line += " (ticket work queued: ServiceNow is unavailable; `fileferry resume` " \
                    "delivers it)"
        console.print(line, highlight=False)


def isatty() -> bool:
    return sys.stderr.isatty()


def print_history(events: list[dict[str, object]], console: Console = stdout) -> None:
    """One line per event: time, state (with its Map path), what happened."""
    import datetime as _dt

    table = Table(title="history", title_justify="left")
    for column in ("time", "state", "event", "detail"):
        table.add_column(column, overflow="fold")
    for e in events:
        at = _dt.datetime.fromtimestamp(float(str(e.get("at", 0))), tz=_dt.UTC)
        state = str(e.get("path") or e.get("state"))
        detail = ""
        if e.get("event") in ("retrying", "failed"):
            detail = escape(f"{e.get('error')}: {e.get('cause')}")
            if e.get("event") == "retrying":
                detail = f"attempt {e.get('attempt')} in {e.get('delay')}s; {detail}"
        table.add_row(at.strftime("%H:%M:%S.%f")[:-3], escape(state), str(e.get("event")),
                      detail)
    console.print(table)


def _when(ts: object) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(float(str(ts))).strftime("%Y-%m-%d %H:%M:%S")


def _progress(t: dict[str, object]) -> str:
    total, done = int(str(t.get("bytes_total", 0))), int(str(t.get("bytes_done", 0)))
    pct = 100 if t.get("status") == "SUCCEEDED" else (100 * done // total if total else 0)
    return f"{pct:3d}%  {human_size(done)} / {human_size(total)}"


def print_transfers(page: dict[str, object], console: Console = stdout) -> None:
    """The body of ``GET /api/transfers`` (or the local store's same page) as a table."""
    table = Table(title="transfers", title_justify="left")
    table.add_column("transfer", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("progress", "requester", "destination", "tickets", "started"):
        table.add_column(column, overflow="fold")
    rows = page.get("data")
    for t in rows if isinstance(rows, list) else []:
        tickets = " ".join((t.get("tickets") or {}).values())
        table.add_row(t["transfer_id"], t["status"], _progress(t), escape(t["requester"]),
                      escape(t["destination"]), escape(tickets), _when(t["created_at"]))
    console.print(table)
    if page.get("next_cursor"):
        console.print(f"more: --cursor {page['next_cursor']}", highlight=False)


def print_transfer(t: dict[str, object], console: Console = stdout) -> None:
    """The body of ``GET /api/transfers/ID``: summary, files, then the history."""
    tickets = t.get("tickets") or {}
    assert isinstance(tickets, dict)
    console.print(f"transfer {t['transfer_id']}: [bold]{t['status']}[/bold]  {_progress(t)}\n"
                  f"requester {escape(str(t['requester']))}, destination "
                  f"{escape(str(t['destination']))}, started "
                  f"{_when(t['created_at'])}; tickets: "
                  + escape(", ".join(f"{k} {v}" for k, v in tickets.items()) or "-"),
                  highlight=False)
    error = t.get("error")
    if isinstance(error, dict):
        stderr.print(f"[red]{escape(str(error.get('type')))}[/red]: "
                     f"{escape(str(error.get('message')))}", highlight=False)
    files = t.get("files")
    if isinstance(files, list) and files:
        table = Table(title="files", title_justify="left")
        for column in ("destination", "size", "sha256", "verified by", "retries", "status"):
            table.add_column(column, overflow="fold")
        for f in files:
            table.add_row(escape(f["destination"]), human_size(int(f["size"])),
                          f.get("sha256") or "-",
                          f.get("verified_by") or "-", str(f.get("retries", 0)), f["status"])
        console.print(table)
    history = t.get("history")
    if isinstance(history, list) and history:
        print_history(history, console)
