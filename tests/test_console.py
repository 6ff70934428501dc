"""What a person sees: object names with square brackets are shown as they are, never read
as Rich markup (which would restyle them, or fail on a closing tag nothing opened)."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from fileferry.console import ProgressBars, print_result, print_transfer, print_transfers
from fileferry.models import FilePlan, FileResult, TransferResult

# The last part of a key (what a progress bar shows) holds no "/"; a table shows whole paths.
BASENAMES = ["data[red].csv", "[bold]x", "a\\[red]b", "ends with a backslash\\",
             "[link=mailto:eve@example.com]click"]
NAMES = [*BASENAMES, "[/x] closes nothing", "[link=http://evil.example]click[/link]"]


def _console() -> Console:
    return Console(file=io.StringIO(), record=True, width=200, force_terminal=True,
                   color_system="truecolor")


def _plan(name: str) -> FilePlan:
    return FilePlan(source=f"s3://b/in/{name}", bucket="b", key=f"in/{name}", size=1000,
                    destination=f"/inbound/{name}")


@pytest.mark.parametrize("name", BASENAMES)
def test_progress_bars_show_an_object_name_as_it_is(name: str) -> None:
    console = _console()
    plan = _plan(name)
    with ProgressBars(console) as bars:
        bars.plan(1000)
        bars.file_started(plan)
        bars.bytes_moved(plan, 400)
        bars.file_retrying(plan, 2, "reset")
        time.sleep(0.05)
    shown = console.export_text(styles=False)
    assert name[:30] in shown
    assert "(retry 2)" in shown
    styled = console.export_text(styles=True)
    assert "\x1b]8;" not in styled  # no hyperlink from a name


def test_a_name_is_cut_before_it_is_escaped() -> None:
    """A cut through ``[red]`` must not leave half an escape that turns into markup."""
    name = "x" * 37 + "[red]tail.csv"  # the 40-character cut ends inside "[red]"
    console = _console()
    with ProgressBars(console) as bars:
        bars.file_started(_plan(name))
    assert name[:40] in console.export_text(styles=False)


def test_tables_and_errors_show_names_and_messages_as_they_are() -> None:
    out, err = _console(), _console()
    files = [FileResult(source=f"s3://b/{n}", destination=f"/in/{n}", size=1,
                        status="FAILED") for n in NAMES]
    result = TransferResult(transfer_id="tr-1", status="FAILED", files=files,
                            error={"type": "SourceError", "message": "s3://b/[/x] is gone"})
    print_result(result, out, errors=err)
    shown = out.export_text(styles=False)
    for n in NAMES:
        assert f"/in/{n}"[:20] in shown.replace("\n", "")
    assert "s3://b/[/x] is gone" in err.export_text(styles=False)

    row = {"transfer_id": "tr-1", "status": "FAILED", "requester": "[bold]eve",
           "destination": "acme:[red]/x", "created_at": 0, "bytes_total": 1, "bytes_done": 0,
           "tickets": {"user": "[u]INC1"}, "files": [], "history": []}
    print_transfers({"data": [row]}, out)
    print_transfer(row, out)
    shown = out.export_text(styles=False)
    assert shown.count("[bold]eve") == 2 and shown.count("acme:[red]/x") == 2
    assert "[u]INC1" in shown
