"""The documents a run writes: the raw report, ``RESULTS.md`` and ``results.json``.

* the raw report (``--output``, by default ``bench/results/DATE.md`` on full
  runs): every case with its per-run numbers, what each client negotiated,
  the configurations used;
* ``bench/RESULTS.md`` (``--write-results``): the machine and versions, the
  targets, each case's table, case 7, and "What limits us", which is the
  hand-written analysis in ``bench/limits.md`` (kept next to the numbers it
  explains; the harness copies it in, it does not write it);
* ``bench/results.json``: the same data, machine-readable, every run included.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench.overhead import OverheadResult
from bench.protocols import TransportSection
from bench.runner import CaseResult
from bench.tools import CHECK_LEGEND

__all__ = ["Meta", "machine_info", "raw_markdown", "results_json", "results_markdown"]

LIMITS = Path(__file__).with_name("limits.md")


def _command_output(argv: list[str]) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "(not found)"
    text = (res.stdout or res.stderr).strip().splitlines()
    return text[0] if text else "(no output)"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def machine_info() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo
                  if ln.startswith("model name")), "unknown")
    flags = next((ln for ln in cpuinfo if ln.startswith("flags")), "").split()
    accel = ", ".join(f for f in ("aes", "pclmulqdq", "avx2", "avx512f", "sha_ni")
                      if f in flags) or "none"
    mem_kib = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                   if ln.startswith("MemTotal"))
    return {
        "CPUs (nproc)": str(len(os.sched_getaffinity(0))),
        "CPU model": model,
        "CPU crypto/hash features": accel + ("" if "sha_ni" in flags else " (no SHA-NI: "
                                              "SHA-256 runs in software)"),
        "memory": f"{mem_kib / 2**20:.1f} GiB",
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "FileFerry": _version("fileferry"),
        "asyncssh": _version("asyncssh"),
        "cryptography": _version("cryptography"),
        "boto3 / botocore": f"{_version('boto3')} / {_version('botocore')}",
        "moto (S3 stand-in)": _version("moto"),
        "rclone": _command_output(["rclone", "version"]),
        "OpenSSH (client and sshd)": _command_output(["ssh", "-V"]),
        "ProFTPD": _command_output(["/usr/sbin/proftpd", "--version"]),
        "OpenSSL (Python's ssl)": ssl.OPENSSL_VERSION,
        "curl": _command_output(["curl", "--version"]).split(" (")[0],
    }


@dataclass(frozen=True)
class Meta:
    date: str
    command: str
    duration_s: float
    runs: int
    scale: float
    machine: dict[str, str]
    load_start: str
    load_end: str
    rss_floor_mib: float
    parallel: int
    servers: dict[str, str]
    sshd_sessions_counted: bool
    transports: list[TransportSection]
    configurations: dict[str, str]
    raw_report: str | None = None


def _intro(meta: Meta) -> list[str]:
    scale = "" if meta.scale == 1 else (f" **Scaled down ({meta.scale:g}× the issue's sizes): "
                                        "a smoke run, not a result.**")
    return [f"`{meta.command}`: {meta.runs} measured run{'s' if meta.runs > 1 else ''} per "
            "tool and case (after one warm-up run, except case 5), "
            f"{meta.duration_s / 60:.1f} minutes in all.{scale} See `bench/README.md` for "
            "what each number means.", "",
            "The machine is shared with other work and noisy (load average "
            f"{meta.load_start} at the start, {meta.load_end} at the end, on "
            f"{meta.machine['CPUs (nproc)']} CPUs): compare the ratios (FileFerry ÷ other, "
            "taken between runs of the same round), not absolute numbers across reports.", ""]


def _case_sections(results: Sequence[CaseResult], per_run: bool) -> list[str]:
    out: list[str] = []
    for result in results:
        out += [f"### {result.title}", "",
                f"{result.workload.describe()}; {result.in_flight}.", "",
                report.md_table(report.headers(result), report.case_rows(result)), ""]
        if per_run:
            runs = [[row.tool, ", ".join(f"{r.rate:.1f}" for r in sorted(
                result.records, key=lambda r: r.round) if r.key == row.key)]
                for row in result.rows]
            out += ["<details><summary>per run (in round order)</summary>", "",
                    report.md_table(["Tool", f"{result.workload.unit} per round"], runs), "",
                    "</details>", ""]
    return out


def _overhead_section(overhead: OverheadResult | None) -> list[str]:
    if overhead is None:
        return []
    return [f"### Case 7: workflow overhead, a 1 KiB object S3 → SFTP ({overhead.runs} runs "
            f"each, after {overhead.warmup} warm-up runs)", "",
            "In-process: the wall time of each call in one long-lived process and event loop "
            "(connections reused, as in the API or the agent). Whole processes: the "
            "command from start to exit, for context.", "",
            report.md_table(*report.overhead_rows(overhead)), "",
            *(f"* {note}" for note in overhead.notes), ""]


def _machine_rows(meta: Meta) -> list[list[str]]:
    return [*([k, v] for k, v in meta.machine.items()),
            ["load average (1/5/15 min) at start", meta.load_start],
            ["load average at end", meta.load_end],
            ["peak-RSS floor of the measuring launcher", f"{meta.rss_floor_mib:.1f} MiB"],
            ["sshd CPU includes the session processes",
             "yes (the harness adopts them as a subreaper)" if meta.sshd_sessions_counted
             else "no: only sshd's listener and what it reaped"]]


def raw_markdown(meta: Meta, results: Sequence[CaseResult], overhead: OverheadResult | None,
                 targets: Sequence[report.TargetResult]) -> str:
    """Everything of one run: per-run numbers, transports, configurations."""
    out = [f"# FileFerry benchmark, {meta.date}", "", *_intro(meta),
           "## Summary", "", report.md_table(*report.summary_rows(results)), "",
           "A ratio above 1 means FileFerry was faster; the range is the lowest and highest "
           "same-round ratio.", "", "## Targets", "", report.md_table(*report.target_rows(
               targets)), "", "## Cases", "", *_case_sections(results, per_run=True),
           *_overhead_section(overhead),
           "## Checks made", "", report.md_table(["Check", "Meaning"],
                                                 list(CHECK_LEGEND.items())), ""]
    for section in meta.transports:
        out += [f"## {section.title}", "", section.intro, "",
                report.md_table(section.head, section.rows), ""]
    out += ["## Machine", "", report.md_table(["", ""], _machine_rows(meta)), "",
            "## Servers", "", report.md_table(["", ""], [[k, v] for k, v in
                                                         meta.servers.items()]),
            "", "## Tool configurations", "",
            "Paths are those of the run's temporary directory.", ""]
    for title, text in meta.configurations.items():
        lang = "yaml" if ".yaml" in title else ("ini" if ".conf" in title else "sh")
        out += [f"**{title}**", "", f"```{lang}", text.rstrip(), "```", ""]
    return "\n".join(out)


def results_markdown(meta: Meta, results: Sequence[CaseResult],
                     overhead: OverheadResult | None,
                     targets: Sequence[report.TargetResult]) -> str:
    """``bench/RESULTS.md``: where FileFerry stands, and why."""
    raw = f" The raw report of this run, with every run's numbers, the ciphers and the " \
          f"configurations: [`{meta.raw_report}`]({meta.raw_report})." if meta.raw_report \
        else ""
    limits = LIMITS.read_text(encoding="utf-8").strip() if LIMITS.exists() else \
        "## What limits us\n\n(bench/limits.md is missing.)"
    out = ["# FileFerry benchmark results", "",
           f"Measured {meta.date} by `python -m bench` (written by the harness; the section "
           f"\"What limits us\" is `bench/limits.md`).{raw}", "", *_intro(meta),
           "## Targets", "", report.md_table(*report.target_rows(targets)), "",
           "## Summary", "", report.md_table(*report.summary_rows(results)), "",
           "A ratio above 1 means FileFerry was faster; in brackets the lowest and highest "
           "same-round ratio.", "", "## Cases", "", *_case_sections(results, per_run=False),
           *_overhead_section(overhead), limits, "",
           "## Checks made", "", report.md_table(["Check", "Meaning"],
                                                 list(CHECK_LEGEND.items())), "",
           "## Machine and versions", "", report.md_table(["", ""], _machine_rows(meta)), ""]
    return "\n".join(out)


def _case_json(result: CaseResult) -> dict[str, Any]:
    rows = []
    for row in result.rows:
        s = report.row_stats(result, row.key)
        ratio = report.ratio_stats(result, row.key) if row.key != report.reference(
            result).key else None
        rows.append({**asdict(row), **asdict(s), "fileferry_ratio": None if ratio is None else
                     dict(zip(("median", "min", "max"), ratio, strict=True)),
                     "runs": [asdict(r) for r in result.records if r.key == row.key]})
    spec = result.workload
    return {"key": result.key, "case": result.case.number, "title": result.title,
            "protocol": result.protocol, "checks": result.checks,
            "proxy": result.case.proxy, "in_flight": result.in_flight,
            "server": result.server, "unit": spec.unit,
            "workload": {"key": spec.key, "objects": spec.count, "object_bytes":
                         spec.files[0].size, "total_bytes": spec.total_bytes},
            "rows": rows}


def results_json(meta: Meta, results: Sequence[CaseResult], overhead: OverheadResult | None,
                 targets: Sequence[report.TargetResult]) -> str:
    doc = {
        "date": meta.date, "command": meta.command, "duration_s": round(meta.duration_s, 1),
        "runs": meta.runs, "scale": meta.scale, "machine": meta.machine,
        "load_average": {"start": meta.load_start, "end": meta.load_end},
        "rss_floor_mib": meta.rss_floor_mib, "servers": meta.servers,
        "cases": [_case_json(r) for r in results],
        "case7": None if overhead is None else {
            "runs": overhead.runs, "warmup": overhead.warmup, "notes": overhead.notes,
            "rows": [{"key": r.key, "tool": r.tool, "kind": r.kind, **r.stats(),
                      "wall_ms": r.wall_ms, "cpu_s": r.cpu_s, "rss_mib": r.rss_mib}
                     for r in overhead.rows]},
        "targets": [{"case": t.target.case_key, "target": t.target.text, "kind":
                     t.target.kind, "bound": t.target.bound, "value": t.value,
                     "measured": t.shown, "status": t.status} for t in targets],
        "checks": CHECK_LEGEND,
        "transports": [asdict(t) for t in meta.transports],
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
