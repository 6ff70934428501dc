"""Measuring child processes (``os.wait4`` in a tiny launcher) and server processes (/proc)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BenchError",
    "Usage",
    "children_of",
    "find_pid",
    "process_cpu_seconds",
    "run_measured",
]

LAUNCHER = Path(__file__).with_name("_launcher.py")
_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A run failed or produced wrong output: the benchmark stops (loudly)."""


@dataclass(frozen=True)
class Usage:
    """What ``os.wait4`` said about one finished command (its own and its reaped children's)."""

    exit_code: int
    maxrss_kib: int
    user_s: float
    sys_s: float
    wall_s: float

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    @property
    def rss_mib(self) -> float:
        return self.maxrss_kib / 1024


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:]


def run_measured(argv: list[str], *, env: dict[str, str], cwd: Path, log_prefix: Path,
                 timeout: float) -> tuple[Usage, Path, Path]:
    """Run ``argv`` through the launcher; return its usage and the stdout/stderr files.

    A non-zero exit raises :class:`BenchError` with the end of stderr. On a
    timeout or Ctrl-C the launcher is asked to end the command (its process
    group) before this returns or re-raises.
    """
    out, err = log_prefix.with_suffix(".out"), log_prefix.with_suffix(".err")
    command = [sys.executable, "-I", "-S", str(LAUNCHER), str(out), str(err), "--", *argv]
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line, problem = proc.communicate(timeout=timeout)
    except BaseException as exc:
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise BenchError(f"{argv[0]} did not finish in {timeout:.0f}s: {' '.join(argv)}\n"
                             f"{_tail(err)}") from None
        raise
    fields = line.split()
    if proc.returncode != 0 or len(fields) != 5:
        raise BenchError(f"the launcher failed ({proc.returncode}): {problem.strip()}")
    usage = Usage(int(fields[0]), int(fields[1]), float(fields[2]), float(fields[3]),
                  float(fields[4]))
    if usage.exit_code != 0:
        raise BenchError(f"{' '.join(argv)}\nexited with {usage.exit_code}; stderr ends:\n"
                         f"{_tail(err)}\nstdout ends:\n{_tail(out)}")
    return usage, out, err


def process_cpu_seconds(pid: int) -> float:
    """User+system CPU of ``pid`` and of the children it has reaped (from /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / _TICKS


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def find_pid(*needles: str) -> int:
    """The pid of the process whose command line holds every one of ``needles``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in args if a]
        if words and all(n in words for n in needles):
            return int(entry.name)
    raise BenchError(f"no process with {' '.join(needles)} in its command line")
