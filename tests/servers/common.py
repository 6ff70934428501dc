"""Helpers shared by the real-server fixtures (sshd, ProFTPD)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from fileferry.sandbox.net import free_port

__all__ = ["free_port", "make_traversable", "run"]


def run(*args: str, input: str | None = None, ok: tuple[int, ...] = (0,)) -> int:
    """Run a command; raise RuntimeError unless its exit code is in ``ok``; return the code."""
    res = subprocess.run(args, input=input, capture_output=True, text=True, check=False)
    if res.returncode not in ok:
        raise RuntimeError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.returncode


def make_traversable(path: Path) -> None:
    """Let other users (the server's test user) walk into ``path`` and its parents."""
    for p in (path, *path.parents):
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            p.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
