"""``python -m bench``: FileFerry against rclone and OpenSSH's sftp, on 127.0.0.1.

Run from the repository root with the project's virtualenv (see bench/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import getpass
import hashlib
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # ``tests.servers.sshd`` lives at the repository root
    sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402

from bench import report, results  # noqa: E402
from bench.cases import CASES, Case, select_cases, workload_specs  # noqa: E402
from bench.data import (  # noqa: E402
    Workload,
    delete_objects,
    make_local,
    make_s3_only,
    upload,
    warm_page_cache,
)
from bench.measure import BenchError, run_measured  # noqa: E402
from bench.overhead import OverheadResult, run_overhead  # noqa: E402
from bench.protocols import BenchContext, ProtocolBench, TransportSection, registry  # noqa: E402
from bench.runner import CaseResult, run_case  # noqa: E402
from bench.servers import become_subreaper, ensure_command, start_s3  # noqa: E402
from bench.sftp_bench import SftpBench  # noqa: E402

QUICK_SCALE = 1 / 16
CASE7_RUNS = 50
SEED = 20261128


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark FileFerry against rclone and OpenSSH's sftp on local servers "
        "(moto S3, OpenSSH sshd, ProFTPD with FTPS): the issue's cases 1-7.")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per tool and case "
                        "(after one warm-up run; default 3)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the data sizes "
                        "(and the small-file count, case 7's runs) by this; default 1, the "
                        "issue's sizes")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: --scale "
                        f"{QUICK_SCALE:g} (64 MiB instead of 1 GiB; a few minutes)")
    parser.add_argument("--cases", default="1,2,3,4,5,6,7", help="comma-separated case "
                        "numbers to run (default: all)")
    parser.add_argument("--parallel", type=int, default=5, help="files in flight for FileFerry "
                        "(max_parallel_threads) and rclone (--transfers); default 5, "
                        "FileFerry's default")
    parser.add_argument("--chunk-mib", type=int, default=10, help="FileFerry's "
                        "default_chunk_size (default 10, FileFerry's default)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one command may "
                        "take before the benchmark fails (default 1800)")
    parser.add_argument("--output", type=Path, help="write the raw report (Markdown) here "
                        "(default on full runs: bench/results/DATE.md)")
    parser.add_argument("--write-results", action=argparse.BooleanOptionalAction,
                        default=None, help="write bench/RESULTS.md and bench/results.json "
                        "(default: on for a full run, all cases at scale 1)")
    parser.add_argument("--workdir", type=Path, help="where to put data, servers and logs "
                        "(default: a new directory under $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--src", type=Path, metavar="DIR", help="measure the fileferry "
                        "package in DIR instead of the installed one (src/fileferry)")
    parser.add_argument("--baseline-src", type=Path, metavar="DIR", help="also run the "
                        "fileferry package in DIR (e.g. an older copy) as a row of every case, "
                        "so that before/after ratios come from the same rounds")
    parser.add_argument("--state", type=Path, metavar="FILE", help="also save the run's "
                        "results here (pickle), for --render")
    parser.add_argument("--render", type=Path, metavar="FILE", help="run nothing: write the "
                        "documents again from a --state file (e.g. after editing limits.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale = QUICK_SCALE
    if args.runs < 1 or not 0 < args.scale <= 1:
        parser.error("--runs must be at least 1 and --scale in (0, 1]")
    try:
        args.cases = {int(c) for c in args.cases.split(",") if c.strip()}
    except ValueError:
        parser.error("--cases takes numbers, e.g. 1,3,7")
    if not args.cases or not args.cases <= set(range(1, 8)):
        parser.error("--cases: the issue's cases are 1 to 7")
    full = args.scale == 1 and args.cases == set(range(1, 8))
    if args.write_results is None:
        args.write_results = full and not args.baseline_src
    if args.output is None and args.write_results and not args.render:
        args.output = _new_report_path(REPO / "bench" / "results")
    return args


def _new_report_path(directory: Path) -> Path:
    """``DATE.md``, or ``DATE-b.md``, ``DATE-c.md``…: never a report of an earlier run."""
    day = f"{datetime.date.today():%Y-%m-%d}"
    for suffix in ["", *(f"-{chr(c)}" for c in range(ord("b"), ord("z") + 1))]:
        path = directory / f"{day}{suffix}.md"
        if not path.exists():
            return path
    raise SystemExit(f"{directory} has a report for every letter of {day}; pass --output")


def child_env(workdir: Path) -> dict[str, str]:
    """A small, explicit environment: bench credentials only, nothing from the caller's AWS
    or rclone setup (an inherited AWS_CA_BUNDLE, for one, breaks rclone on plain HTTP)."""
    home, tmp = workdir / "home", workdir / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    user = getpass.getuser()
    return {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": str(home),
            "TMPDIR": str(tmp), "LANG": "C.UTF-8", "USER": user, "LOGNAME": user,
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1"}


class Terminated(BaseException):
    """SIGTERM: unwind like Ctrl-C (servers stop, the throw-away user is deleted)."""


def snapshot_fileferry(workdir: Path, source: Path | None = None,
                       name: str = "fileferry-src") -> tuple[Path, str]:
    """Copy the fileferry package aside for the whole run; return (PYTHONPATH entry, digest).

    The project is installed in editable mode and others edit src/ while the
    benchmark runs: without a snapshot, one run could measure two versions,
    or catch a half-edited tree. ``source`` is another package directory
    (``--baseline-src``); by default the installed one.
    """
    import fileferry

    if source is None:
        source = Path(fileferry.__file__).resolve().parent
    target = workdir / name / "fileferry"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    digest = hashlib.sha256()
    for path in sorted(target.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(target)).encode() + b"\0" + path.read_bytes())
    return target.parent, digest.hexdigest()[:16]


def _package(directory: Path) -> Path:
    """The fileferry package in ``directory`` (itself, or its ``fileferry`` folder)."""
    package = directory.resolve()
    if not (package / "__init__.py").exists():
        package = package / "fileferry"
    # the CLI is a package since the split; older trees (baselines) have cli.py
    if not ((package / "cli.py").exists() or (package / "cli" / "__init__.py").exists()):
        raise BenchError(f"{directory} holds no fileferry package")
    return package


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def _workdir(args: argparse.Namespace, stack: ExitStack, console: Console) -> Path:
    if args.workdir:
        workdir: Path = args.workdir.resolve()
        if workdir.exists():
            raise BenchError(f"{workdir} exists; --workdir must name a new directory")
        workdir.mkdir(parents=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="fileferry-bench-"))
    if args.keep:
        console.print(f"work directory (kept): {workdir}")
    else:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    return workdir


class Run:
    """One benchmark run: the servers, the data, the cases in order, the documents."""

    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args, self.console = args, console
        self.started = time.perf_counter()
        self.load_start = _load()
        self.adopted = become_subreaper()
        self.cases: list[Case] = select_cases(args.cases, None)
        self.results: list[CaseResult] = []
        self.overhead: OverheadResult | None = None
        self.protocols: dict[str, ProtocolBench] = {}
        self.servers: dict[str, str] = {}
        self.transports: list[TransportSection] = []

    def say(self, line: str) -> None:
        self.console.print(line, highlight=False, style="dim")

    def context(self, stack: ExitStack) -> BenchContext:
        args = self.args
        fileferry = Path(sys.prefix) / "bin" / "fileferry"
        if not fileferry.exists():
            raise BenchError(f"{fileferry} is missing: pip install -e . in the virtualenv")
        rclone = ensure_command("rclone", "rclone")
        ensure_command("sftp", "openssh-client")
        curl = ensure_command("curl", "curl", optional=True)
        assert rclone is not None
        workdir = _workdir(args, stack, self.console)
        env = child_env(workdir)
        snapshot, tree = snapshot_fileferry(workdir, _package(args.src) if args.src else None)
        age = time.time() - max(f.stat().st_mtime for f in (snapshot / "fileferry").rglob("*.py"))
        if age < 120:
            self.console.print(f"[yellow]warning[/yellow]: src/fileferry changed {age:.0f} s "
                               "before the snapshot; if someone is mid-edit the runs may fail")
        env["PYTHONPATH"] = str(snapshot)  # ahead of the editable install's src/ entry
        self.servers["FileFerry source"] = (f"{args.src or 'src/fileferry'} copied aside at the "
                                            f"start (tree sha256 {tree}), run by the installed "
                                            "CLI via PYTHONPATH")
        baseline = None
        if args.baseline_src:
            path, digest = snapshot_fileferry(workdir, _package(args.baseline_src),
                                              "fileferry-baseline")
            baseline = str(path)
            self.servers["FileFerry before (baseline)"] = (
                f"{args.baseline_src} copied aside (tree sha256 {digest}), the same CLI and "
                "configuration")
        self.console.print(f"[bold]FileFerry benchmark[/bold]  work directory {workdir}")
        s3 = start_s3(stack, workdir)
        self.servers["S3"] = f"moto server {s3.endpoint_url} (one process, plain HTTP)"
        return BenchContext(workdir=workdir, env=env, s3=s3, fileferry=str(fileferry),
                            baseline_pythonpath=baseline, rclone=rclone, curl=curl,
                            parallel=args.parallel, chunk_size=args.chunk_mib * 2**20,
                            timeout=args.timeout)

    def local_data(self, ctx: BenchContext) -> dict[str, Workload]:
        specs = workload_specs(self.args.scale)
        needed = sorted({c.workload for c in self.cases if specs[c.workload].local})
        self.console.print(f"moto S3 on {ctx.s3.endpoint_url}; generating "
                           f"{', '.join(specs[k].title for k in needed) or 'no local data'} …")
        workloads = {key: make_local(ctx.workdir / "data", specs[key], SEED) for key in needed}
        upload(ctx.s3, list(workloads.values()))
        warm_page_cache(list(workloads.values()))
        return workloads

    def protocol(self, name: str, stack: ExitStack, ctx: BenchContext) -> ProtocolBench:
        if name not in self.protocols:
            proto = registry()[name](ctx)
            proto.start(stack)
            proto.identify_transports()
            self.protocols[name] = proto
        return self.protocols[name]

    def run_cases(self, ctx: BenchContext, stack: ExitStack) -> None:
        local = self.local_data(ctx)
        specs = workload_specs(self.args.scale)
        for case in self.cases:
            proto = self.protocol(case.protocol, stack, ctx)
            proto.prepare(case, stack)
            workload = local.get(case.workload)
            if workload is None:
                self.say(f"generating {specs[case.workload].title} in S3 for case {case.number}")
                workload = make_s3_only(ctx.s3, specs[case.workload], SEED)
            self.console.rule(case.title(workload.describe()))
            try:
                result = run_case(ctx, proto, case, workload, self.args.runs, self.say)
            finally:
                if workload.local_dir is None:
                    delete_objects(ctx.s3, workload)
            self.results.append(result)
            self.console.print(report.case_table(result))
        if 7 in self.args.cases:
            sftp = self.protocol("sftp", stack, ctx)
            assert isinstance(sftp, SftpBench)
            self.console.rule("Case 7: workflow overhead (1 KiB object)")
            runs = max(10, round(CASE7_RUNS * self.args.scale))
            self.overhead = run_overhead(ctx, sftp, runs, SEED, self.say)
            self.console.print(report.overhead_table(self.overhead))

    def write(self, ctx: BenchContext, floor_mib: float) -> None:
        args, configurations = self.args, {}
        for proto in self.protocols.values():
            self.servers.update(proto.describe())
            self.transports.append(proto.transports())
            configurations.update(proto.configurations())
        raw = None
        if args.output:
            raw = os.path.relpath(args.output.resolve(), REPO / "bench")
        meta = results.Meta(
            date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            command="python -m bench " + " ".join(sys.argv[1:]),
            duration_s=time.perf_counter() - self.started, runs=args.runs, scale=args.scale,
            machine=results.machine_info(), load_start=self.load_start, load_end=_load(),
            rss_floor_mib=floor_mib, parallel=args.parallel, servers=self.servers,
            sshd_sessions_counted=self.adopted, transports=self.transports,
            configurations={k: v.replace(str(ctx.workdir), "$WORK")
                            for k, v in configurations.items()}, raw_report=raw)
        if args.state:
            with args.state.open("wb") as fh:
                pickle.dump((meta, self.results, self.overhead), fh)
        write_documents(args, meta, self.results, self.overhead, self.console)

    def __call__(self) -> int:
        with ExitStack() as stack:
            ctx = self.context(stack)
            floor, _, _ = run_measured(["/bin/true"], env=ctx.env, cwd=ctx.workdir,
                                       log_prefix=ctx.workdir / "floor", timeout=30)
            self.run_cases(ctx, stack)
            self.write(ctx, floor.rss_mib)
        return 0


def write_documents(args: argparse.Namespace, meta: results.Meta, done: list[CaseResult],
                    overhead: OverheadResult | None, console: Console) -> None:
    """Print the summary and the targets; write the raw report and RESULTS.md/results.json."""
    targets = report.evaluate_targets(done, overhead)
    if done:
        console.print(report.summary_table(done))
    for t in targets:
        console.print(f"  {t.status:>7}  {t.target.text}: {t.shown}", highlight=False)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(results.raw_markdown(meta, done, overhead, targets),
                               encoding="utf-8")
        console.print(f"raw report written to {args.output}")
    if args.write_results:
        bench = REPO / "bench"
        (bench / "RESULTS.md").write_text(results.results_markdown(meta, done, overhead,
                                                                   targets), encoding="utf-8")
        (bench / "results.json").write_text(results.results_json(meta, done, overhead,
                                                                 targets), encoding="utf-8")
        console.print(f"{bench / 'RESULTS.md'} and results.json written")
    console.print(f"done in {meta.duration_s / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # piped or redirected: keep the tables readable
        console = Console(width=170)
    signal.signal(signal.SIGTERM, _terminate)
    if args.render:
        with args.render.open("rb") as fh:
            meta, done, overhead = pickle.load(fh)  # our own file from --state
        if args.output:
            meta = dataclasses.replace(meta, raw_report=os.path.relpath(
                args.output.resolve(), REPO / "bench"))
        write_documents(args, meta, done, overhead, console)
        return 0
    try:
        return Run(args, console)()
    except BenchError as exc:
        console.print(f"[red]benchmark failed[/red]: {exc}", highlight=False)
        return 1
    except (KeyboardInterrupt, Terminated) as exc:
        console.print("[yellow]interrupted[/yellow]: servers stopped"
                      + ("" if args.keep else ", work directory removed"))
        return 130 if isinstance(exc, KeyboardInterrupt) else 143


__all__ = ["CASES", "main"]

if __name__ == "__main__":
    sys.exit(main())
