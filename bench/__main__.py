"""``python -m bench``: FileFerry against rclone and OpenSSH's sftp, on 127.0.0.1.

Run from the repository root with the project's virtualenv (see bench/README.md).
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import hashlib
import os
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

from bench import report  # noqa: E402
from bench.data import make_workloads, upload, warm_page_cache  # noqa: E402
from bench.measure import BenchError, run_measured  # noqa: E402
from bench.protocols import CASES, PROTOCOLS, BenchContext, TransportSection  # noqa: E402
from bench.runner import CaseResult, run_case  # noqa: E402
from bench.servers import become_subreaper, ensure_command, start_s3  # noqa: E402

QUICK = {"big_mib": 64, "small_files": 50}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark FileFerry against rclone and OpenSSH's sftp on local servers "
        "(moto S3, OpenSSH sshd, ProFTPD with FTPS), with integrity checks on and off.")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per tool and case "
                        "(after one warm-up run; default 3)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK['big_mib']} "
                        f"MiB big file, {QUICK['small_files']} small files (~2 minutes)")
    parser.add_argument("--big-mib", type=int, default=None, help="size of the big file "
                        "(default 512)")
    parser.add_argument("--small-files", type=int, default=None, help="number of small files "
                        "(default 200)")
    parser.add_argument("--small-kib", type=int, default=64, help="size of each small file "
                        "(default 64)")
    parser.add_argument("--protocols", default=",".join(CASES), help="comma-separated "
                        f"(default and available: {','.join(PROTOCOLS)})")
    parser.add_argument("--only", choices=("big", "small"), help="run only one workload")
    parser.add_argument("--parallel", type=int, default=5, help="files in flight for FileFerry "
                        "(max_parallel_threads) and rclone (--transfers); default 5, "
                        "FileFerry's default")
    parser.add_argument("--chunk-mib", type=int, default=10, help="FileFerry's "
                        "default_chunk_size (default 10, FileFerry's default)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one command may "
                        "take before the benchmark fails (default 900)")
    parser.add_argument("--output", type=Path, help="also write the results as Markdown here")
    parser.add_argument("--workdir", type=Path, help="where to put data, servers and logs "
                        "(default: a new directory under $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--src", type=Path, metavar="DIR", help="measure the fileferry "
                        "package in DIR instead of the installed one (src/fileferry)")
    parser.add_argument("--baseline-src", type=Path, metavar="DIR", help="also run the "
                        "fileferry package in DIR (e.g. an older copy) as a row of every case, "
                        "so that before/after ratios come from the same rounds")
    args = parser.parse_args(argv)
    if args.big_mib is None:
        args.big_mib = QUICK["big_mib"] if args.quick else 512
    if args.small_files is None:
        args.small_files = QUICK["small_files"] if args.quick else 200
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = [p for p in args.protocols if p not in PROTOCOLS]
    if unknown:
        parser.error(f"unknown protocol(s) {', '.join(unknown)}; available: "
                     f"{', '.join(PROTOCOLS)}")
    return args


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
    if not (package / "cli.py").exists():
        raise BenchError(f"{directory} holds no fileferry package")
    return package


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def run(args: argparse.Namespace, console: Console) -> int:
    started = time.perf_counter()
    load_start = _load()
    adopted = become_subreaper()
    fileferry = Path(sys.prefix) / "bin" / "fileferry"
    if not fileferry.exists():
        raise BenchError(f"{fileferry} is missing: pip install -e . in the virtualenv first")
    rclone = ensure_command("rclone", "rclone")
    ensure_command("sftp", "openssh-client")
    curl = ensure_command("curl", "curl", optional=True)
    assert rclone is not None
    with ExitStack() as stack:
        if args.workdir:
            workdir = args.workdir.resolve()
            if workdir.exists():
                raise BenchError(f"{workdir} exists; --workdir must name a new directory")
            workdir.mkdir(parents=True)
        else:
            workdir = Path(tempfile.mkdtemp(prefix="fileferry-bench-"))
        if args.keep:
            console.print(f"work directory (kept): {workdir}")
        else:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        env = child_env(workdir)
        snapshot, tree = snapshot_fileferry(workdir, _package(args.src) if args.src else None)
        age = time.time() - max(f.stat().st_mtime for f in (snapshot / "fileferry").rglob("*.py"))
        if age < 120:
            console.print(f"[yellow]warning[/yellow]: src/fileferry changed {age:.0f} s before "
                          "the snapshot; if someone is mid-edit the runs may fail")
        env["PYTHONPATH"] = str(snapshot)  # ahead of the editable install's src/ entry
        baseline = None
        if args.baseline_src:
            baseline_path, baseline_tree = snapshot_fileferry(
                workdir, _package(args.baseline_src), "fileferry-baseline")
            baseline = str(baseline_path)
        console.print(f"[bold]FileFerry benchmark[/bold]  work directory {workdir}")
        s3 = start_s3(stack, workdir)
        console.print(f"moto S3 on {s3.endpoint_url}; generating data …")
        workloads = make_workloads(workdir / "data", args.big_mib, args.small_files,
                                   args.small_kib)
        upload(s3, workloads)
        warm_page_cache(workloads)
        floor, _, _ = run_measured(["/bin/true"], env=env, cwd=workdir,
                                   log_prefix=workdir / "floor", timeout=30)
        ctx = BenchContext(workdir=workdir, env=env, s3=s3, fileferry=str(fileferry),
                           baseline_pythonpath=baseline,
                           rclone=rclone, curl=curl, parallel=args.parallel,
                           chunk_size=args.chunk_mib * 2**20, timeout=args.timeout)
        results: list[CaseResult] = []
        servers: dict[str, str] = {
            "FileFerry source": f"{args.src or 'src/fileferry'} copied aside at the start (tree "
                                f"sha256 {tree}), run by the installed CLI via PYTHONPATH",
            **({"FileFerry before (baseline)": f"{args.baseline_src} copied aside (tree sha256 "
                f"{baseline_tree}), the same CLI and configuration"} if baseline else {}),
            "S3": f"moto server {s3.endpoint_url} (one process, plain HTTP)"}
        transports: list[TransportSection] = []
        configurations: dict[str, str] = {}
        for name in args.protocols:
            proto = PROTOCOLS[name](ctx)
            proto.start(stack)
            proto.identify_transports()
            servers.update(proto.describe())
            transports.append(proto.transports())
            for workload_key, checks in CASES[name]:
                if args.only and workload_key != args.only:
                    continue
                workload = workloads[workload_key]
                console.rule(f"{name}: {workload.title}, checks {'on' if checks else 'off'}")
                result = run_case(ctx, proto, workload, checks, args.runs,
                                  lambda line: console.print(line, highlight=False,
                                                             style="dim"))
                results.append(result)
                console.print(report.case_table(result))
            configurations.update(proto.configurations())
        console.print(report.summary_table(results))
        meta = report.Meta(
            date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            command="python -m bench " + " ".join(sys.argv[1:]),
            duration_s=time.perf_counter() - started, runs=args.runs,
            machine=report.machine_info(), load_start=load_start, load_end=_load(),
            rss_floor_mib=floor.rss_mib, parallel=args.parallel, servers=servers,
            sshd_sessions_counted=adopted,
            transports=transports,
            configurations={k: v.replace(str(workdir), "$WORK")
                            for k, v in configurations.items()})
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(report.markdown(meta, results), encoding="utf-8")
            console.print(f"Markdown written to {args.output}")
        console.print(f"done in {meta.duration_s / 60:.1f} min; stopping the servers")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # piped or redirected: keep the tables readable
        console = Console(width=170)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(args, console)
    except BenchError as exc:
        console.print(f"[red]benchmark failed[/red]: {exc}", highlight=False)
        return 1
    except (KeyboardInterrupt, Terminated) as exc:
        console.print("[yellow]interrupted[/yellow]: servers stopped"
                      + ("" if args.keep else ", work directory removed"))
        return 130 if isinstance(exc, KeyboardInterrupt) else 143


if __name__ == "__main__":
    sys.exit(main())
