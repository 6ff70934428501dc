"""Generic helpers shared by the test modules (no fixtures, nothing project-specific)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CLI_TIMEOUT = 180.0


def cli_command(*args: str | Path) -> list[str]:
    """The argv of ``python -m fileferry ARGS...`` with this interpreter."""
    return [sys.executable, "-m", "fileferry", *(str(a) for a in args)]


def cli_env(env: Mapping[str, str] | None = None, *,
            unset: tuple[str, ...] = ()) -> dict[str, str]:
    """``os.environ`` (AWS test credentials included) plus ``env``, minus ``unset``."""
    out = {**os.environ, **(env or {})}
    for name in unset:
        out.pop(name, None)
    return out


def run_cli(*args: str | Path, cwd: Path, env: Mapping[str, str] | None = None,
            unset: tuple[str, ...] = (), timeout: float = CLI_TIMEOUT
            ) -> subprocess.CompletedProcess[str]:
    """Run ``fileferry ARGS...`` as a child process; never raises on a non-zero exit."""
    return subprocess.run(cli_command(*args), cwd=cwd, env=cli_env(env, unset=unset),
                          capture_output=True, text=True, encoding="utf-8",
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)


def json_line(stdout: str) -> dict[str, Any]:
    """Parse stdout that must be exactly one line holding one compact JSON object."""
    lines = stdout.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stdout, got {len(lines)}: {stdout!r}"
    assert stdout.endswith("\n"), f"the JSON line is not newline-terminated: {stdout!r}"
    data = json.loads(lines[0])
    assert isinstance(data, dict), f"not a JSON object: {lines[0]!r}"
    compact = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    assert lines[0] == compact, f"the JSON line is not compact JSON: {lines[0]!r}"
    return data


def seed(s3: Any, bucket: str, objects: Mapping[str, bytes]) -> None:
    """Put each ``key: body`` into ``bucket``."""
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def sha256_file(path: Path, block: int = 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file below ``root`` (hidden ones included), by POSIX relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def entries_under(root: Path) -> list[str]:
    """Every file and directory below ``root``, by POSIX relative path."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
