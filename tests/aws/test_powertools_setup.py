"""Powertools is set up by the first invocation, not by importing the handlers: a process
that only imports them keeps its own logging, and a Lambda still logs structured JSON."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import pytest

from fileferry.aws.handlers import HANDLERS
from fileferry.aws.runtime import powertools, release_powertools
from fileferry.errors import UsageError
from fileferry.models import new_transfer_id
from tests.aws.conftest import FakeContext

IMPORT_ONLY = textwrap.dedent("""
    import io, logging, sys
    seen = io.StringIO()
    logging.basicConfig(stream=seen, format="%(name)s %(message)s", level=logging.INFO)
    import fileferry.aws.handlers, fileferry.aws.runtime
    service = logging.getLogger("fileferry")
    assert service.handlers == [], service.handlers
    assert all(h.filters == [] for h in logging.getLogger().handlers)
    logging.getLogger("fileferry.transfer").warning("plain as ever")
    assert seen.getvalue() == "fileferry.transfer plain as ever\\n", seen.getvalue()
    print("ok")
""")


def test_importing_the_handlers_leaves_logging_alone() -> None:
    done = subprocess.run([sys.executable, "-c", IMPORT_ONLY], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def _invoke_with_a_bad_event(transfer_id: str) -> None:
    with pytest.raises(UsageError, match="FileFerry-ValidateInput: the event is not a valid"):
        HANDLERS["ValidateInputFunction"]({"transfer_id": transfer_id, "execution_id": "ex-1"},
                                          FakeContext())


def _json_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_an_invocation_logs_json_with_the_ids_until_released(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.delenv("FILEFERRY_IDEMPOTENCY_TABLE", raising=False)
    release_powertools()  # whatever ran before: start as a fresh process would
    service = logging.getLogger("fileferry")
    assert service.handlers == []
    try:
        for _ in range(2):  # set up, released, and set up again by the next invocation
            tid = new_transfer_id()
            _invoke_with_a_bad_event(tid)
            assert service.handlers == [powertools().logger.logger_handler]
            logs = [d for d in _json_lines(capsys.readouterr().out)
                    if d.get("message") == "step failed"]
            assert len(logs) == 1, logs
            assert logs[0]["level"] == "WARNING" and logs[0]["error"] == "UsageError"
            assert (logs[0]["transfer_id"], logs[0]["execution_id"], logs[0]["step"]) \
                == (tid, "ex-1", "ValidateInput")
            assert logs[0]["function_name"] == "FileFerry-Test"  # Lambda's context, injected
            release_powertools()
            assert service.handlers == [] and service.level == logging.NOTSET
            assert all(h.filters == [] for h in logging.getLogger().handlers
                       if type(h).__module__ != "_pytest.logging")
    finally:
        release_powertools()
