"""The transfer definition passes statelint with the ARNs SAM would substitute, and its
error names are FileFerry's error classes (or States.* / Lambda.* / Powertools')."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)

from fileferry.errors import all_error_classes
from fileferry.workflow.asl import StateMachine
from fileferry.workflow.registry import STEPS, definition_text


def arns() -> dict[str, str]:
    return {name: f"arn:aws:lambda:us-east-1:123456789012:function:FileFerry-{name}"
            for name in STEPS}


def test_statelint_accepts_the_deployed_form(tmp_path: Path) -> None:
    text = definition_text()
    for name, arn in arns().items():
        text = text.replace("${" + name + "}", arn)
    assert "${" not in re.sub(r'"Comment": "[^"]*"', "", text)
    path = tmp_path / "transfer.asl.json"
    path.write_text(text, encoding="utf-8")
    lint = Path(sys.executable).with_name("statelint")
    done = subprocess.run([str(lint), str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    StateMachine.load(text)


def test_error_names_are_ours_or_aws() -> None:
    ours = {cls.__name__ for cls in all_error_classes()}
    names: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            names.update(node.get("ErrorEquals", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(definition_text()))
    foreign = {n for n in names if n not in ours and not n.startswith(("States.", "Lambda."))}
    assert foreign == {IdempotencyAlreadyInProgressError.__name__}  # raised on Lambda only
    assert {"EndpointUnavailable", "ChecksumMismatch"} <= names


def test_every_resource_has_a_step() -> None:
    resources = set(re.findall(r"\$\{(\w+)\}", definition_text()))
    assert resources == set(STEPS)


def test_every_task_retries_a_call_still_in_progress() -> None:
    """Every Task runs an idempotent function (aws.runtime): a retry that races the
    attempt before it gets IdempotencyAlreadyInProgressError, and waits it out with
    backoff for longer than a function may run (900 s) before giving up."""
    name = IdempotencyAlreadyInProgressError.__name__
    tasks: dict[str, dict[str, Any]] = {}

    def walk(states: dict[str, Any]) -> None:
        for state_name, state in states.items():
            if state["Type"] == "Task":
                tasks[state_name] = state
            for branch in [state.get("ItemProcessor"), *state.get("Branches", [])]:
                if branch:
                    walk(branch["States"])

    walk(json.loads(definition_text())["States"])
    assert len(tasks) == 14
    for state_name, state in tasks.items():
        retriers = [r for r in state.get("Retry", []) if name in r["ErrorEquals"]]
        assert len(retriers) == 1, state_name
        r = retriers[0]
        waits = [min(r["IntervalSeconds"] * r["BackoffRate"] ** n, r["MaxDelaySeconds"])
                 for n in range(r["MaxAttempts"])]
        assert sum(waits) > 900 and r.get("JitterStrategy", "NONE") == "NONE", state_name
