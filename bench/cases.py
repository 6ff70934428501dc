"""The issue's cases, their data sets and the targets, in one table.

``CASES`` lists every measured case in the order they run: the issue's
number, the protocol, the data set, whether integrity checks are on, and
what is special (through the delay proxy; only FileFerry and rclone). Case
7 (workflow overhead) is not a row-per-tool case and lives in
``bench/overhead.py``. ``workload_specs(scale)`` gives the data sets at the
issue's sizes (``scale`` 1) or smaller, for a smoke run.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.data import MiB, WorkloadSpec

__all__ = ["CASES", "TARGETS", "Case", "Target", "select_cases", "workload_specs"]


@dataclass(frozen=True)
class Case:
    number: int
    """The issue's case number (1-6; 7 is bench/overhead.py)."""
    protocol: str
    workload: str
    checks: bool
    proxy: bool = False
    """Case 6: the SFTP connection goes through the delay proxy (25 ms each way)."""
    competitors_only: bool = False
    """Case 5: FileFerry and rclone only (no baselines, no extra FileFerry rows)."""
    warmup: bool = True

    @property
    def key(self) -> str:
        return (f"{self.number}-{self.protocol}-{self.workload}"
                f"{'-proxy' if self.proxy else ''}-{'on' if self.checks else 'off'}")

    def title(self, description: str) -> str:
        what = {"big": description, "parallel": f"{description} in parallel",
                "small": description, "mem5": f"memory: {description} in parallel",
                "mem4g": f"memory: {description}"}[self.workload]
        extra = ", through a 25 ms (each way) delay proxy" if self.proxy else ""
        checks = "integrity checks ON" if self.checks else "integrity checks OFF"
        return f"Case {self.number}: S3 → {self.protocol.upper()}, {what}{extra}, {checks}"


CASES: tuple[Case, ...] = (
    Case(1, "sftp", "big", True), Case(1, "sftp", "big", False),
    Case(2, "sftp", "parallel", True), Case(2, "sftp", "parallel", False),
    Case(3, "sftp", "small", True), Case(3, "sftp", "small", False),
    Case(4, "ftps", "big", True), Case(4, "ftps", "big", False),
    Case(5, "sftp", "mem5", True, competitors_only=True, warmup=False),
    Case(5, "sftp", "mem4g", True, competitors_only=True, warmup=False),
    Case(6, "sftp", "big", True, proxy=True),
)


def workload_specs(scale: float) -> dict[str, WorkloadSpec]:
    """The data sets; ``scale`` < 1 shrinks sizes (and the small-file count) for a smoke run."""

    def size(mib: int) -> int:
        return max(MiB, int(mib * MiB * scale) // MiB * MiB)

    small_count = max(20, int(1000 * scale))
    return {
        "big": WorkloadSpec("big", 1, size(1024), "MB/s"),
        "parallel": WorkloadSpec("parallel", 5, size(256), "MB/s"),
        "small": WorkloadSpec("small", small_count, 16 * 1024, "files/s"),
        "mem5": WorkloadSpec("mem5", 5, size(1024), "MB/s", local=False),
        "mem4g": WorkloadSpec("mem4g", 1, size(4096), "MB/s", local=False),
    }


def select_cases(numbers: set[int] | None, protocols: set[str] | None) -> list[Case]:
    return [c for c in CASES if (not numbers or c.number in numbers)
            and (not protocols or c.protocol in protocols)]


@dataclass(frozen=True)
class Target:
    """One of the issue's targets: a case, the row compared with, and the bound."""

    case_key: str
    text: str
    kind: str  # "ratio" (FileFerry ÷ row ≥ bound), "rss" (≤ MiB), "rss-growth", "p50"
    against: str = ""
    bound: float = 0.0


TARGETS: tuple[Target, ...] = (
    Target("1-sftp-big-on", "Case 1 ≥ 1.0× rclone, checks on", "ratio", "rclone", 1.0),
    Target("1-sftp-big-on", "Case 1 ≥ 0.6× OpenSSH sftp (aes128-gcm, FileFerry's cipher), "
           "checks on", "ratio", "sftp-gcm", 0.6),
    Target("1-sftp-big-on", "Case 1 ≥ 0.6× OpenSSH sftp (default cipher), checks on",
           "ratio", "sftp", 0.6),
    Target("2-sftp-parallel-on", "Case 2 ≥ 1.2× rclone, checks on", "ratio", "rclone", 1.2),
    Target("3-sftp-small-on", "Case 3 ≥ 1.5× rclone files/s, checks on", "ratio", "rclone",
           1.5),
    Target("6-sftp-big-proxy-on", "Case 6 ≥ 1.5× rclone", "ratio", "rclone", 1.5),
    Target("5-sftp-mem5-on", "Case 5 peak RSS ≤ 256 MiB (5 × 1 GiB in parallel)", "rss",
           bound=256),
    Target("5-sftp-mem4g-on", "Case 5 peak RSS ≤ 256 MiB (one 4 GiB object)", "rss",
           bound=256),
    Target("5-sftp-mem4g-on", "Case 5: the 4 GiB object's peak RSS within 10% of the 1 GiB "
           "object's (case 1, checks on)", "rss-growth", "1-sftp-big-on", 0.10),
    Target("7", "Case 7 p50 ≤ 250 ms (a 1 KiB object through the whole workflow, "
           "in-process)", "p50", bound=250),
)
