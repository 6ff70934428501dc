"""The memory bound: streaming a 200 MiB object costs far less than 200 MiB of RSS.

Both runs are real ``python -m fileferry transfer --json`` child processes whose
peak RSS comes from ``os.wait4`` (``ru_maxrss``, KiB on Linux).

Linux carries a process's peak RSS across ``execve``, and ``subprocess`` starts
children with ``vfork``: a child started straight from this (large) pytest
process reports at least pytest's own peak, so both runs would read the same
number. A tiny launcher process therefore starts the CLI with ``Popen``, reaps
it with ``os.wait4`` and writes the numbers to a file; its own small footprint
is the same in both runs and cancels out of the difference.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MakeConfig, sftp_destination
from tests.helpers import cli_command, cli_env, json_line, seed, sha256_bytes, sha256_file
from tests.servers.sshd import SshdServer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="ru_maxrss is KiB only on Linux")

MiB = 1024 * 1024
BIG_SIZE = 200 * MiB
PIECE = 8 * MiB
MAX_GROWTH = 100 * MiB
RUN_TIMEOUT = 240.0

# argv: REPORT_FILE COMMAND...; stdout/stderr are inherited by COMMAND.
LAUNCHER = """\
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
proc.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as fh:
    json.dump({"returncode": proc.returncode, "maxrss_kib": usage.ru_maxrss}, fh)
"""


@dataclass(frozen=True)
class Measured:
    returncode: int
    result: dict[str, Any]
    peak_rss: int
    """bytes"""
    stderr: str


def run_measured(*args: str | Path, cwd: Path) -> Measured:
    """Run the CLI through the launcher; return its exit code, JSON result and peak RSS."""
    tag = secrets.token_hex(4)
    out_path, err_path = cwd / f"stdout-{tag}.txt", cwd / f"stderr-{tag}.txt"
    report = cwd / f"rusage-{tag}.json"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        launcher = subprocess.run([sys.executable, "-c", LAUNCHER, str(report),
                                   *cli_command(*args)],
                                  cwd=cwd, env=cli_env(), stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=err, timeout=RUN_TIMEOUT, check=False)
    stderr = err_path.read_text(encoding="utf-8")
    assert launcher.returncode == 0, f"the launcher failed: {stderr}"
    usage = json.loads(report.read_text(encoding="utf-8"))
    stdout = out_path.read_text(encoding="utf-8")
    return Measured(usage["returncode"], json_line(stdout) if stdout else {},
                    usage["maxrss_kib"] * 1024, stderr)


def write_random_file(path: Path, size: int) -> str:
    """Fill ``path`` with ``size`` random bytes in PIECE-sized writes; return the sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        remaining = size
        while remaining:
            piece = os.urandom(min(PIECE, remaining))
            digest.update(piece)
            fh.write(piece)
            remaining -= len(piece)
    return digest.hexdigest()


def assert_delivered(run: Measured, size: int) -> dict[str, Any]:
    assert run.returncode == 0, run.stderr
    assert run.result["status"] == "SUCCEEDED", run.result
    [entry] = run.result["files"]
    assert entry["size"] == size
    return dict(entry)


def test_streaming_200_mib_stays_within_memory_bound(
        s3: Any, bucket: str, make_config: MakeConfig, sshd: SshdServer, remote_dir: Path,
        tmp_path: Path) -> None:
    config = make_config({"acme": sftp_destination(sshd, remote_dir)})
    small = os.urandom(1024)
    seed(s3, bucket, {"tiny.bin": small})
    local = tmp_path / "big.bin"
    landed = remote_dir / "big.bin"
    try:
        big_sha256 = write_random_file(local, BIG_SIZE)
        with local.open("rb") as fh:
            s3.upload_fileobj(fh, bucket, "big.bin")
        local.unlink()

        baseline = run_measured("transfer", "--config", config, "--json",
                                f"s3://{bucket}/tiny.bin", "acme:", cwd=tmp_path)
        entry = assert_delivered(baseline, len(small))
        assert entry["sha256"] == sha256_bytes(small)
        assert sha256_bytes((remote_dir / "tiny.bin").read_bytes()) == sha256_bytes(small)

        big = run_measured("transfer", "--config", config, "--json",
                           f"s3://{bucket}/big.bin", "acme:", cwd=tmp_path)
        entry = assert_delivered(big, BIG_SIZE)
        assert entry["sha256"] == big_sha256
        assert landed.stat().st_size == BIG_SIZE
        assert sha256_file(landed) == big_sha256

        growth = big.peak_rss - baseline.peak_rss
        print(f"\npeak RSS: 1 KiB transfer {baseline.peak_rss / MiB:.1f} MiB, "
              f"200 MiB transfer {big.peak_rss / MiB:.1f} MiB, growth {growth / MiB:.1f} MiB")
        assert growth < MAX_GROWTH, (
            f"streaming 200 MiB grew peak RSS by {growth / MiB:.1f} MiB "
            f"(baseline {baseline.peak_rss / MiB:.1f} MiB, big {big.peak_rss / MiB:.1f} MiB)")
    finally:
        landed.unlink(missing_ok=True)
        local.unlink(missing_ok=True)
        s3.delete_object(Bucket=bucket, Key="big.bin")


PARALLEL_FILES = 8
PARALLEL_SIZE = 24 * MiB
BUDGET = 16 * MiB
FIXED_OVERHEAD = 128 * MiB
"""Outside the budget: copies in the SSH library's send path and HTTP read buffers."""


def test_memory_budget_holds_with_many_files_in_parallel(
        s3: Any, bucket: str, make_config: MakeConfig, sshd: SshdServer, remote_dir: Path,
        tmp_path: Path) -> None:
    """Eight 24 MiB files at once with 4 MiB chunks, with and without a 16 MiB budget."""
    bodies = {f"par/{i}.bin": os.urandom(PARALLEL_SIZE) for i in range(PARALLEL_FILES)}
    seed(s3, bucket, {"tiny.bin": b"x", **bodies})
    growth = {}
    for budget in (BUDGET, 4096 * MiB):
        transfer = {"max_parallel_threads": PARALLEL_FILES, "default_chunk_size": 4 * MiB,
                    "memory_budget": budget}
        config = make_config({"acme": sftp_destination(sshd, remote_dir)}, transfer=transfer)
        baseline = run_measured("transfer", "--config", config, "--json",
                                f"s3://{bucket}/tiny.bin", f"acme:{budget}", cwd=tmp_path)
        assert baseline.result["status"] == "SUCCEEDED"
        run = run_measured("transfer", "--config", config, "--json", f"s3://{bucket}/par/",
                           f"acme:{budget}", cwd=tmp_path)
        assert run.result["status"] == "SUCCEEDED", run.result
        for key, body in bodies.items():
            landed = remote_dir / str(budget) / key.removeprefix("par/")
            assert sha256_file(landed) == sha256_bytes(body)
        growth[budget] = run.peak_rss - baseline.peak_rss
    budgeted, unbudgeted = growth[BUDGET], growth[4096 * MiB]
    print(f"\n{PARALLEL_FILES} x {PARALLEL_SIZE // MiB} MiB: peak RSS grew "
          f"{budgeted / MiB:.1f} MiB with a {BUDGET // MiB} MiB budget, "
          f"{unbudgeted / MiB:.1f} MiB without")
    assert budgeted < BUDGET + FIXED_OVERHEAD
    assert budgeted < 0.6 * unbudgeted, "the budget is what keeps memory flat"
