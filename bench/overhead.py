"""Case 7: what the workflow costs on top of the copy, for a 1 KiB object.

Measured two ways, each run alternating between the things compared:

* **in-process** (the case's figure): ``bench/_overhead_child.py`` runs
  ``submit_transfer`` (the ASL workflow on the embedded runner, the SQLite
  store, ServiceNow tickets, a webhook notification) and ``run_transfer``
  (the bare engine) back to back in one event loop, and times each call;
* **whole processes** (context): ``fileferry transfer`` (the workflow),
  ``fileferry transfer --dry-run`` (start-up, configuration, connecting and
  planning; nothing moves) and ``rclone copy`` of the same object, each
  through the measuring launcher.

The ServiceNow emulator and the webhook receiver run in a process of their
own (``bench/_emulators.py``); at the end the harness checks that every
workflow transfer opened its two tickets and posted its notification.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.data import Workload, WorkloadSpec, make_s3_only
from bench.measure import BenchError, run_measured
from bench.protocols import BenchContext
from bench.sftp_bench import SftpBench

__all__ = ["OverheadResult", "OverheadRow", "percentile", "run_overhead"]

HERE = Path(__file__).resolve().parent
PASSWORD_VAR = "BENCH_SERVICENOW_PASSWORD"
WARMUP = 3


def percentile(values: list[float], pct: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * pct / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class OverheadRow:
    key: str
    tool: str
    kind: str  # "in-process" or "process"
    wall_ms: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)

    def stats(self) -> dict[str, float]:
        out = {"p50_ms": percentile(self.wall_ms, 50), "p95_ms": percentile(self.wall_ms, 95),
               "min_ms": min(self.wall_ms), "max_ms": max(self.wall_ms),
               "mean_ms": statistics.fmean(self.wall_ms)}
        if self.cpu_s:
            out["cpu_median_s"] = statistics.median(self.cpu_s)
            out["rss_max_mib"] = max(self.rss_mib)
        return out


@dataclass
class OverheadResult:
    runs: int
    warmup: int
    rows: list[OverheadRow]
    notes: list[str]


def _start_emulators(stack: ExitStack, env: dict[str, str]) -> tuple[dict[str, str],
                                                                      Callable[[], Any]]:
    proc = subprocess.Popen([sys.executable, "-P", str(HERE / "_emulators.py")], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    info = json.loads(proc.stdout.readline() or "{}")
    if "servicenow" not in info:
        proc.kill()
        raise BenchError("the ServiceNow/webhook emulators did not start")

    def finish() -> Any:
        assert proc.stdin is not None and proc.stdout is not None
        if proc.stdin.closed:
            return {}
        proc.stdin.close()
        counts = json.loads(proc.stdout.readline() or "{}")
        proc.wait(30)
        return counts

    def stop() -> None:  # on an error: the emulators must not outlive the run
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    stack.callback(stop)
    return info, finish


def _config(ctx: BenchContext, sftp: SftpBench, emulators: dict[str, str]) -> Path:
    settings = sftp.workflow_settings()
    settings["servicenow"] = {"instance_url": emulators["servicenow"], "username": "fileferry",
                              "password": "${" + PASSWORD_VAR + "}",
                              "default_assignment_group": "DataOps"}
    settings["notifications"] = {"channels": [{"name": "bench", "kind": "webhook",
                                               "url": emulators["webhook"]}]}
    settings["store"] = {"url": f"sqlite:///{ctx.workdir / 'fileferry-case7.db'}"}
    path = ctx.workdir / "conf" / "fileferry-case7.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def _in_process(ctx: BenchContext, env: dict[str, str], config: Path, obj: Workload,
                rel: str, runs: int, logs: Path) -> list[OverheadRow]:
    _, out, _ = run_measured(
        [sys.executable, "-P", str(HERE / "_overhead_child.py"), str(config), obj.s3_uri(),
         f"{rel}/in-process", str(WARMUP), str(runs)],
        env=env, cwd=logs, log_prefix=logs / "in-process", timeout=ctx.timeout)
    rows = {"workflow": OverheadRow("workflow", "FileFerry workflow (submit_transfer: ASL "
                                    "runner, SQLite store, ServiceNow, webhook)", "in-process"),
            "engine": OverheadRow("engine", "FileFerry bare engine (run_transfer)",
                                  "in-process")}
    for line in out.read_text().splitlines():
        item = json.loads(line)
        if item["md5"] != obj.files[0].md5 or item["verified_by"] != "server-md5":
            raise BenchError(f"case 7 {item['mode']} run {item['i']}: {item}")
        if not item["warmup"]:
            rows[item["mode"]].wall_ms.append(item["wall_s"] * 1000)
    return list(rows.values())


def _processes(ctx: BenchContext, sftp: SftpBench, env: dict[str, str], config: Path,
               obj: Workload, rel: str, runs: int, logs: Path,
               say: Callable[[str], None]) -> list[OverheadRow]:
    remote = f"{sftp.sshd.server.root}/{rel}"
    commands: dict[str, tuple[str, Callable[[int], list[str]]]] = {
        "cli": ("fileferry transfer (whole process, workflow)", lambda i: [
            ctx.fileferry, "transfer", "--config", str(config), "--json", obj.s3_uri(),
            f"bench:{rel}/cli-{i:03d}/"]),
        "cli-dry-run": ("fileferry transfer --dry-run (start-up, connect, plan; no copy)",
                        lambda i: [ctx.fileferry, "transfer", "--dry-run", "--config",
                                   str(config), "--json", obj.s3_uri(),
                                   f"bench:{rel}/dry-{i:03d}/"]),
        "rclone": ("rclone copy (whole process, md5sum check)", lambda i: [
            ctx.rclone, "--config", str(sftp.confs / "rclone.conf"), "copy", "--retries", "1",
            obj.rclone_source("s3"), f"dst:{remote}/rclone-{i:03d}/"]),
    }
    rows = {key: OverheadRow(key, title, "process") for key, (title, _) in commands.items()}
    keys = list(commands)
    for i in range(WARMUP + runs):
        for key in keys[i % 3:] + keys[:i % 3]:
            usage, out, _ = run_measured(commands[key][1](i), env=env, cwd=logs,
                                         log_prefix=logs / f"{key}-{i:03d}",
                                         timeout=ctx.timeout)
            if key.startswith("cli"):
                result = json.loads(out.read_text().splitlines()[-1])
                if result["status"] != "SUCCEEDED":
                    raise BenchError(f"case 7 {key} run {i}: {result}")
            if i >= WARMUP:
                rows[key].wall_ms.append(usage.wall_s * 1000)
                rows[key].cpu_s.append(usage.cpu_s)
                rows[key].rss_mib.append(usage.rss_mib)
        if i % 10 == 9:
            say(f"  case 7 processes: {i + 1}/{WARMUP + runs} rounds")
    return list(rows.values())


def run_overhead(ctx: BenchContext, sftp: SftpBench, runs: int, seed: int,
                 say: Callable[[str], None]) -> OverheadResult:
    """Case 7 against sshd's shell port (``verify: auto``), with the emulators running."""
    obj = make_s3_only(ctx.s3, WorkloadSpec("tiny", 1, 1024, "files/s", local=False), seed)
    run = sftp.make_run_dir("7-overhead", evidence=False)
    with ExitStack() as stack:
        emulators, finish = _start_emulators(stack, ctx.env)
        config = _config(ctx, sftp, emulators)
        env = {**ctx.env, PASSWORD_VAR: emulators["password"]}
        say(f"  case 7 in-process: {WARMUP} + {runs} runs each of the workflow and the engine")
        rows = _in_process(ctx, env, config, obj, run.rel, runs, run.logs)
        say(f"  case 7 whole processes: {WARMUP} + {runs} runs each")
        rows += _processes(ctx, sftp, env, config, obj, run.rel, runs, run.logs, say)
        counts = finish()
    workflows = WARMUP + runs  # in-process
    workflows += WARMUP + runs  # fileferry transfer processes
    notes = [f"ServiceNow emulator: {counts.get('incidents')} incidents for {workflows} "
             f"workflow transfers (a user and an audit ticket each); webhook receiver: "
             f"{counts.get('webhooks')} notifications"]
    if counts.get("incidents") != 2 * workflows or counts.get("webhooks") != workflows:
        raise BenchError(f"case 7: {notes[0]}; expected {2 * workflows} and {workflows}")
    return OverheadResult(runs=runs, warmup=WARMUP, rows=rows, notes=notes)
