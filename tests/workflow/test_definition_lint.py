"""The transfer definition passes statelint with the ARNs SAM would substitute, and its
error names are FileFerry's error classes (or States.* / Lambda.*)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

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
    assert not foreign
    assert {"EndpointUnavailable", "ChecksumMismatch"} <= names


def test_every_resource_has_a_step() -> None:
    resources = set(re.findall(r"\$\{(\w+)\}", definition_text()))
    assert resources == set(STEPS)
