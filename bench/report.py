"""Statistics, the targets, and the tables (rich on the terminal, Markdown in the reports)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

from bench.cases import TARGETS, Target
from bench.overhead import OverheadResult
from bench.runner import CaseResult, RowInfo

__all__ = ["HEADERS", "RowStats", "TargetResult", "case_rows", "case_table", "evaluate_targets",
           "fmt", "headers", "md_table", "overhead_rows", "overhead_table", "paired_ratios",
           "ratio_stats", "ratio_text", "reference", "row_stats", "summary_rows",
           "summary_table", "target_rows"]

HEADERS = ("Tool", "Check made", "Cipher", "{unit} median", "min–max", "wall s", "peak RSS MiB",
           "CPU s", "{server} CPU s", "S3 CPU s", "FileFerry ÷ this")
SUMMARY_COLUMNS = {"rclone": "÷ rclone", "sftp": "÷ sftp (default cipher)",
                   "sftp-gcm": "÷ sftp (aes128-gcm)", "fileferry-before": "÷ FileFerry before"}


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


def ratio_stats(result: CaseResult, key: str) -> tuple[float, float, float] | None:
    """(median, min, max) of the same-round ratios, or None."""
    ratios = paired_ratios(result, key)
    return (statistics.median(ratios), min(ratios), max(ratios)) if ratios else None


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def ratio_text(result: CaseResult, row: RowInfo) -> str:
    if row.key == reference(result).key or row.role == "context":
        return "—"
    found = ratio_stats(result, row.key)
    if found is None:
        return "—"
    med, low, high = found
    return f"{med:.2f} ({low:.2f}–{high:.2f})" if low != high else f"{med:.2f}"


def case_rows(result: CaseResult) -> list[list[str]]:
    rows = []
    for row in result.rows:
        s = row_stats(result, row.key)
        rows.append([row.tool, row.check, row.cipher.split("@")[0], fmt(s.rate_median),
                     f"{fmt(s.rate_min)}–{fmt(s.rate_max)}", f"{s.wall_median:.2f}",
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
    for row, cells in zip(result.rows, case_rows(result), strict=True):
        style = "bold" if row.role == "fileferry" and row.key == reference(result).key else (
            "dim" if row.role == "context" else None)
        table.add_row(*cells, style=style)
    return table


def summary_rows(results: Sequence[CaseResult]) -> tuple[list[str], list[list[str]]]:
    """One line per case: FileFerry's median and peak RSS, its ratio to each other tool."""
    present = {row.key for result in results for row in result.rows}
    cols = [(key, title) for key, title in SUMMARY_COLUMNS.items() if key in present]
    head = ["Case", "FileFerry median", "FileFerry peak RSS MiB", *(t for _, t in cols)]
    rows = []
    for result in results:
        s = row_stats(result, reference(result).key)
        by_key = {row.key: row for row in result.rows}
        rows.append([result.title, f"{fmt(s.rate_median)} {result.workload.unit}",
                     f"{s.rss_max:.0f}",
                     *(ratio_text(result, by_key[key]) if key in by_key else "—"
                       for key, _ in cols)])
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


def overhead_rows(result: OverheadResult) -> tuple[list[str], list[list[str]]]:
    head = ["What", "measured", "p50 ms", "p95 ms", "min–max ms", "CPU s (median)",
            "peak RSS MiB"]
    rows = []
    for row in result.rows:
        s = row.stats()
        rows.append([row.tool, row.kind, f"{s['p50_ms']:.0f}", f"{s['p95_ms']:.0f}",
                     f"{s['min_ms']:.0f}–{s['max_ms']:.0f}",
                     f"{s['cpu_median_s']:.2f}" if "cpu_median_s" in s else "—",
                     f"{s['rss_max_mib']:.0f}" if "rss_max_mib" in s else "—"])
    return head, rows


def overhead_table(result: OverheadResult) -> Table:
    head, rows = overhead_rows(result)
    table = Table(title=f"Case 7: workflow overhead, a 1 KiB object ({result.runs} runs each)",
                  title_justify="left", header_style="bold")
    for i, h in enumerate(head):
        table.add_column(h, justify="left" if i < 2 else "right")
    for cells in rows:
        table.add_row(*cells)
    return table


@dataclass(frozen=True)
class TargetResult:
    target: Target
    value: float | None
    shown: str
    status: str  # "met", "missed", "not run"


def _evaluate(target: Target, by_key: dict[str, CaseResult],
              overhead: OverheadResult | None) -> tuple[float | None, str]:
    if target.kind == "p50":
        if overhead is None:
            return None, "—"
        row = next(r for r in overhead.rows if r.key == "workflow")
        value = row.stats()["p50_ms"]
        return value, f"{value:.0f} ms"
    result = by_key.get(target.case_key)
    if result is None:
        return None, "—"
    if target.kind == "ratio":
        found = ratio_stats(result, target.against)
        if found is None:
            return None, "—"
        return found[0], f"{found[0]:.2f}× ({found[1]:.2f}–{found[2]:.2f})"
    rss = row_stats(result, reference(result).key).rss_max
    if target.kind == "rss":
        return rss, f"{rss:.0f} MiB"
    other = by_key.get(target.against)
    if other is None:
        return None, f"{rss:.0f} MiB (case 1 not run)"
    base = row_stats(other, reference(other).key).rss_max
    growth = rss / base - 1
    return growth, f"{rss:.0f} MiB vs {base:.0f} MiB: {growth:+.0%}"


def evaluate_targets(results: Sequence[CaseResult],
                     overhead: OverheadResult | None) -> list[TargetResult]:
    by_key = {r.key: r for r in results}
    out = []
    for target in TARGETS:
        value, shown = _evaluate(target, by_key, overhead)
        if value is None:
            status = "not run"
        elif target.kind == "ratio":
            status = "met" if value >= target.bound else "missed"
        else:
            status = "met" if value <= target.bound else "missed"
        out.append(TargetResult(target, value, shown, status))
    return out


def target_rows(targets: Sequence[TargetResult]) -> tuple[list[str], list[list[str]]]:
    marks = {"met": "**met**", "missed": "missed", "not run": "not run"}
    return (["Target", "Measured (median, same-round range)", ""],
            [[t.target.text, t.shown, marks[t.status]] for t in targets])


def md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
