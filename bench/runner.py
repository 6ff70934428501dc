"""Run one case: a warm-up round, then N measured rounds, each tool once per round.

The order of the tools rotates from round to round, and every ratio is taken
between runs of the same round, so slow phases of a noisy machine hit all
tools alike instead of whichever happened to run then.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from bench.cases import Case
from bench.data import Workload
from bench.measure import BenchError, run_measured
from bench.protocols import BenchContext, ProtocolBench
from bench.tools import RunDir, Variant

__all__ = ["CaseResult", "RowInfo", "RunRecord", "run_case"]


@dataclass(frozen=True)
class RowInfo:
    key: str
    tool: str
    role: str
    cipher: str
    check: str


@dataclass(frozen=True)
class RunRecord:
    round: int
    key: str
    wall_s: float
    cpu_s: float
    rss_mib: float
    server_cpu_s: float
    s3_cpu_s: float
    rate: float


@dataclass
class CaseResult:
    case: Case
    workload: Workload
    rows: list[RowInfo]
    records: list[RunRecord]
    server: str = "server"
    """The destination server's name, for the server-CPU column."""
    in_flight: str = ""
    """How many files each tool had in flight."""

    @property
    def protocol(self) -> str:
        return self.case.protocol

    @property
    def checks(self) -> bool:
        return self.case.checks

    @property
    def key(self) -> str:
        return self.case.key

    @property
    def title(self) -> str:
        return self.case.title(self.workload.describe())


def _md5(path: os.PathLike[str]) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(8 * 2**20):
            digest.update(block)
    return digest.hexdigest()


def check_landed(variant: Variant, run: RunDir, workload: Workload, full: bool) -> None:
    """Exactly the expected files, with the right sizes (and, when ``full``, MD5s)."""
    names = sorted(os.listdir(run.local))
    expected = sorted(f.name for f in workload.files)
    if names != expected:
        extra = sorted(set(names) - set(expected))[:5]
        missing = sorted(set(expected) - set(names))[:5]
        raise BenchError(f"{variant.tool}: {run.local} holds unexpected {extra} / lacks "
                         f"{missing}")
    for spec in workload.files:
        path = run.local / spec.name
        if path.stat().st_size != spec.size:
            raise BenchError(f"{variant.tool}: {path} has {path.stat().st_size} bytes, "
                             f"expected {spec.size}")
        if full and _md5(path) != spec.md5:
            raise BenchError(f"{variant.tool}: {path} has the wrong MD5")


def _run_once(ctx: BenchContext, proto: ProtocolBench, case: Case, workload: Workload,
              variant: Variant, rnd: int) -> tuple[RunRecord, str]:
    first = 0 if case.warmup else 1
    # The first run asks each tool for proof of the check it made (rclone's -vv log).
    run = proto.make_run_dir(f"{case.key}-r{rnd}-{variant.key}", evidence=rnd == first)
    try:
        os.sync()
        server0, s3_0 = proto.server_cpu_seconds(), ctx.s3.cpu_seconds()
        usages, outputs = [], []
        for i, argv in enumerate(variant.steps(run)):
            usage, out, err = run_measured(argv, env={**ctx.env, **variant.env}, cwd=run.logs,
                                           log_prefix=run.logs / f"step{i}",
                                           timeout=ctx.timeout)
            usages.append(usage)
            outputs.append((out, err))
        server1, s3_1 = proto.server_cpu_seconds(), ctx.s3.cpu_seconds()
        check = variant.check_made(run, outputs)
        if variant.role != "context":
            # MD5 of what landed: on the first two rounds (the first only for big data sets).
            check_landed(variant, run, workload,
                         full=rnd <= 1 if workload.total_bytes <= 2**31 else rnd == first)
    finally:
        shutil.rmtree(run.local, ignore_errors=True)
    wall = sum(u.wall_s for u in usages)
    record = RunRecord(round=rnd, key=variant.key, wall_s=wall,
                       cpu_s=sum(u.cpu_s for u in usages),
                       rss_mib=max(u.rss_mib for u in usages),
                       server_cpu_s=server1 - server0, s3_cpu_s=s3_1 - s3_0,
                       rate=workload.rate(wall))
    return record, check


def run_case(ctx: BenchContext, proto: ProtocolBench, case: Case, workload: Workload,
             runs: int, say: Callable[[str], None]) -> CaseResult:
    """A warm-up round (unless the case has none), then ``runs`` measured rounds."""
    variants = proto.variants(case, workload)
    result = CaseResult(case=case, workload=workload, rows=[], records=[],
                        server=proto.server_label, in_flight=proto.in_flight())
    checks_made: dict[str, str] = {}
    for rnd in range(0 if case.warmup else 1, runs + 1):
        shift = rnd % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            record, check = _run_once(ctx, proto, case, workload, variant, rnd)
            if checks_made.setdefault(variant.key, check) != check:
                raise BenchError(f"{variant.tool} made '{check}' in round {rnd} but "
                                 f"'{checks_made[variant.key]}' before")
            label = "warm-up" if rnd == 0 else f"run {rnd}/{runs}"
            say(f"  {label:>9}  {variant.tool:<52} {record.wall_s:7.2f} s "
                f"{record.rate:9.1f} {workload.unit:<7} CPU {record.cpu_s:6.2f} s "
                f"RSS {record.rss_mib:6.1f} MiB")
            if rnd > 0:
                result.records.append(record)
    result.rows = [RowInfo(v.key, v.tool, v.role, v.cipher, checks_made[v.key])
                   for v in variants]
    return result
