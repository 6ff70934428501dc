"""Statistics, the rich tables on the terminal and the Markdown report."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import ssl
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from bench.protocols import TransportSection
from bench.runner import CaseResult, RowInfo
from bench.tools import CHECK_LEGEND

__all__ = ["Meta", "case_table", "machine_info", "markdown", "summary_table"]

HEADERS = ("Tool", "Check made", "Cipher", "{unit} median", "min–max", "wall s", "peak RSS MiB",
           "CPU s", "{server} CPU s", "S3 CPU s", "FileFerry ÷ this")


@dataclass(frozen=True)
class RowStats:
    rate_median: float
    rate_min: float
    rate_max: float
    wall_median: float
    rss_max: float
    cpu_median: float
    server_cpu_median: float
    s3_cpu_median: float
    runs: int


def row_stats(result: CaseResult, key: str) -> RowStats:
    recs = [r for r in result.records if r.key == key]
    rates = [r.rate for r in recs]
    return RowStats(statistics.median(rates), min(rates), max(rates),
                    statistics.median(r.wall_s for r in recs), max(r.rss_mib for r in recs),
                    statistics.median(r.cpu_s for r in recs),
                    statistics.median(r.server_cpu_s for r in recs),
                    statistics.median(r.s3_cpu_s for r in recs), len(recs))


def reference(result: CaseResult) -> RowInfo:
    return next(row for row in result.rows if row.role == "fileferry")


def paired_ratios(result: CaseResult, key: str) -> list[float]:
    """FileFerry's rate ÷ this row's rate, for each round both ran in (same round only)."""
    ref = reference(result).key
    mine = {r.round: r.rate for r in result.records if r.key == ref}
    theirs = {r.round: r.rate for r in result.records if r.key == key}
    return [mine[n] / theirs[n] for n in sorted(mine.keys() & theirs.keys())]


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def ratio_text(result: CaseResult, row: RowInfo) -> str:
    if row.key == reference(result).key or row.role == "context":
        return "—"
    ratios = paired_ratios(result, row.key)
    if not ratios:
        return "—"
    med = statistics.median(ratios)
    return f"{med:.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else f"{med:.2f}"


def table_rows(result: CaseResult) -> list[list[str]]:
    rows = []
    for row in result.rows:
        s = row_stats(result, row.key)
        rows.append([row.tool, row.check, row.cipher.split("@")[0], _fmt(s.rate_median),
                     f"{_fmt(s.rate_min)}–{_fmt(s.rate_max)}", f"{s.wall_median:.2f}",
                     f"{s.rss_max:.0f}", f"{s.cpu_median:.2f}", f"{s.server_cpu_median:.2f}",
                     f"{s.s3_cpu_median:.2f}", ratio_text(result, row)])
    return rows


def headers(result: CaseResult) -> list[str]:
    return [h.format(unit=result.workload.unit, server=result.server) for h in HEADERS]


def case_table(result: CaseResult) -> Table:
    table = Table(title=result.title, title_justify="left", header_style="bold")
    for i, head in enumerate(headers(result)):
        table.add_column(head, justify="left" if i < 3 else "right",
                         overflow="fold", max_width=34 if i == 0 else None)
    for row, cells in zip(result.rows, table_rows(result), strict=True):
        style = "bold" if row.role == "fileferry" and row.key == reference(result).key else (
            "dim" if row.role == "context" else None)
        table.add_row(*cells, style=style)
    return table


def summary_columns(results: Sequence[CaseResult]) -> list[tuple[str, str]]:
    """(row key, heading) of every row FileFerry is compared with, in first-seen order."""
    seen: dict[str, str] = {}
    for result in results:
        for row in result.rows:
            if row.role in ("rclone", "baseline") and row.key not in seen:
                seen[row.key] = {"rclone": "÷ rclone", "sftp": "÷ sftp (default cipher)",
                                 "sftp-gcm": "÷ sftp (aes128-gcm)",
                                 "fileferry-before": "÷ FileFerry before"}.get(row.key,
                                                                               f"÷ {row.key}")
    return list(seen.items())


def summary_rows(results: Sequence[CaseResult]) -> tuple[list[str], list[list[str]]]:
    cols = summary_columns(results)
    head = ["Case", "FileFerry median", *(title for _, title in cols)]
    rows = []
    for result in results:
        ref = reference(result)
        s = row_stats(result, ref.key)
        cells = [result.title, f"{_fmt(s.rate_median)} {result.workload.unit}"]
        by_key = {row.key: row for row in result.rows}
        cells += [ratio_text(result, by_key[key]) if key in by_key else "—" for key, _ in cols]
        rows.append(cells)
    return head, rows


def summary_table(results: Sequence[CaseResult]) -> Table:
    head, rows = summary_rows(results)
    table = Table(title="FileFerry ÷ other tool (median of same-round ratios; > 1 = FileFerry "
                  "faster)", title_justify="left", header_style="bold")
    for i, h in enumerate(head):
        table.add_column(h, justify="left" if i == 0 else "right")
    for cells in rows:
        table.add_row(*cells)
    return table


# -- Markdown -------------------------------------------------------------------------------


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


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
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("flags")), "").split()
    accel = ", ".join(f for f in ("aes", "pclmulqdq", "avx2", "sha_ni") if f in flags) or "none"
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
        "boto3": _version("boto3"),
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
    machine: dict[str, str]
    load_start: str
    load_end: str
    rss_floor_mib: float
    parallel: int
    servers: dict[str, str]
    sshd_sessions_counted: bool
    transports: list[TransportSection]
    configurations: dict[str, str]


def markdown(meta: Meta, results: Sequence[CaseResult]) -> str:
    out = [f"# FileFerry benchmark, {meta.date}", "",
           f"`{meta.command}`: {meta.runs} measured run{'s' if meta.runs > 1 else ''} per "
           "tool and case (after one "
           f"warm-up run), {meta.duration_s / 60:.1f} minutes in all. Produced by "
           "`python -m bench`; see `bench/README.md` for what each number means.", "",
           "The machine is shared and noisy: compare the ratios (FileFerry ÷ other, taken "
           "between runs of the same round), not absolute numbers across reports.", "",
           "## Summary", "", _md_table(*summary_rows(results)), "",
           "A ratio above 1 means FileFerry was faster; the range is the lowest and highest "
           "same-round ratio.", ""]
    for result in results:
        out += [f"## {result.title}", "",
                f"{result.workload.describe()}; {result.in_flight}.", "",
                _md_table(headers(result), table_rows(result)), ""]
        runs = []
        for row in result.rows:
            rates = [f"{r.rate:.1f}" for r in sorted(result.records, key=lambda r: r.round)
                     if r.key == row.key]
            runs.append([row.tool, ", ".join(rates)])
        out += ["<details><summary>per run (in round order)</summary>", "",
                _md_table(["Tool", f"{result.workload.unit} per round"], runs), "",
                "</details>", ""]
    out += ["## Checks made", "", _md_table(["Check", "Meaning"], list(CHECK_LEGEND.items())),
            ""]
    for section in meta.transports:
        out += [f"## {section.title}", "", section.intro, "",
                _md_table(section.head, section.rows), ""]
    out += ["## Machine", "",
            _md_table(["", ""], [*([k, v] for k, v in meta.machine.items()),
                                 ["load average (1/5/15 min) at start", meta.load_start],
                                 ["load average at end", meta.load_end],
                                 ["peak-RSS floor of the measuring launcher",
                                  f"{meta.rss_floor_mib:.1f} MiB"],
                                 ["sshd CPU includes the session processes",
                                  "yes (the harness adopts them as a subreaper)"
                                  if meta.sshd_sessions_counted else
                                  "no: only sshd's listener and what it reaped"]]), "",
            "## Servers", "", _md_table(["", ""], [[k, v] for k, v in meta.servers.items()]),
            "", "## Tool configurations", "",
            "Paths are those of the run's temporary directory.", ""]
    for title, text in meta.configurations.items():
        lang = "yaml" if ".yaml" in title else ("ini" if ".conf" in title else "sh")
        out += [f"**{title}**", "", f"```{lang}", text.rstrip(), "```", ""]
    return "\n".join(out)
