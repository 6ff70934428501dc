"""What every protocol's setup provides, and the registry of protocols.

A protocol knows how to start its server(s), where on this machine the
server writes, how FileFerry and rclone reach it, which baselines to run and
which transport (cipher) each client ends up with:

* ``SftpBench`` (``bench/sftp_bench.py``): OpenSSH's sshd (a shell port and
  an SFTP-only port), with OpenSSH's own ``sftp`` as the baseline, and the
  delay proxy of case 6;
* ``FtpsBench`` (``bench/ftps_bench.py``): ProFTPD with explicit FTPS
  (``TLSRequired on``) and mod_digest. No baseline: OpenSSH has no FTPS,
  and curl 7.88's multi-file FTPS upload against ProFTPD fails (``425``) or
  leaves empty files.

The runner, the measurements and the reports need no change for a new one.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cases import Case
from bench.data import Workload
from bench.servers import S3Server
from bench.tools import RunDir, Variant

__all__ = ["BenchContext", "ProtocolBench", "TransportSection", "fileferry_transfer_settings"]


@dataclass(frozen=True)
class TransportSection:
    """The report's table of what each client negotiated with one protocol's server."""

    title: str
    intro: str
    head: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class BenchContext:
    """What every protocol and variant needs from the harness."""

    workdir: Path
    env: dict[str, str]
    s3: S3Server
    fileferry: str
    rclone: str
    curl: str | None
    parallel: int
    chunk_size: int
    timeout: float
    baseline_pythonpath: str | None = None
    """``--baseline-src``: another fileferry package, run as an extra row of every case."""


def fileferry_transfer_settings(ctx: BenchContext) -> dict[str, Any]:
    """The ``transfer:`` section every FileFerry configuration of the benchmark uses.

    ``large_file_threshold`` is raised above every object so that each file is
    one streamed GET, as for rclone: moto answers a ranged GET by reading the
    whole object into memory and slicing it, so FileFerry's parallel ranges
    (from 1 GiB by default) would read a 4 GiB object four times at once and
    hold 16 GiB in moto. Against S3, ranges are what makes one large object
    fast; here they would only measure moto.
    """
    return {"default_chunk_size": ctx.chunk_size, "max_parallel_threads": ctx.parallel,
            "enable_compression": False, "large_file_threshold": 64 * 2**30}


class ProtocolBench(ABC):
    name: str
    server_label: str
    """Names the server-CPU column (``sshd CPU s``, ``proftpd CPU s``)."""

    def __init__(self, ctx: BenchContext) -> None:
        self.ctx = ctx

    @abstractmethod
    def start(self, stack: ExitStack) -> None:
        """Start the destination server(s); register their stop on ``stack``."""

    @abstractmethod
    def make_run_dir(self, name: str, evidence: bool) -> RunDir:
        """A fresh, empty target directory the server's user may write to."""

    @abstractmethod
    def variants(self, case: Case, workload: Workload) -> list[Variant]:
        """The rows of one case, FileFerry first (the reference for the ratios)."""

    @abstractmethod
    def server_cpu_seconds(self) -> float:
        """CPU used so far by the destination server (including finished sessions)."""

    @abstractmethod
    def identify_transports(self) -> None:
        """Find out which cipher each client negotiates (before ``variants`` is called)."""

    @abstractmethod
    def transports(self) -> TransportSection:
        """What each client negotiated (cipher, ...), for the report."""

    @abstractmethod
    def configurations(self) -> dict[str, str]:
        """Title → text of every tool configuration, for the report."""

    def prepare(self, case: Case, stack: ExitStack) -> None:  # noqa: B027 (optional hook)
        """Anything a case needs beyond the server (case 6: the delay proxy)."""

    def describe(self) -> dict[str, str]:
        return {}

    def in_flight(self) -> str:
        """How many files each tool has in flight, for the report."""
        return f"{self.ctx.parallel} files in flight for FileFerry and rclone"

    def with_baseline(self, rows: list[Variant]) -> list[Variant]:
        """With ``--baseline-src``: the first row again, run from the other package."""
        if not self.ctx.baseline_pythonpath:
            return rows
        first = rows[0]
        before = dataclasses.replace(
            first, key="fileferry-before", tool=first.tool.replace("FileFerry", "FileFerry before"),
            role="baseline", env={**first.env, "PYTHONPATH": self.ctx.baseline_pythonpath})
        return [first, before, *rows[1:]]


def registry() -> dict[str, type[ProtocolBench]]:
    """``name`` → class (imported here: the protocol modules import this one)."""
    from bench.ftps_bench import FtpsBench
    from bench.sftp_bench import SftpBench

    return {"sftp": SftpBench, "ftps": FtpsBench}
