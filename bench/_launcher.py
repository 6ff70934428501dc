"""Run one command and print its ``os.wait4`` resource usage on one line.

Usage (see ``bench/measure.py``)::

    python -I -S _launcher.py STDOUT_FILE STDERR_FILE -- COMMAND [ARG...]

The command inherits this process's environment and working directory; its
stdin is ``/dev/null``. The line printed is ``exit_code maxrss_kib user_s
sys_s wall_s``.

Why a separate, import-free process: on Linux a child's ``ru_maxrss`` starts
at the peak RSS of the process it was forked from (``exec`` records the old
address space's high-water mark). The harness holds rich and boto3 (~80 MiB),
so every tool it forked directly would seem to need at least that. Forked from
this ~8 MiB interpreter, the floor is ~5 MiB (``python -m bench`` measures and
reports it).
"""

import contextlib
import os
import signal
import sys
import time
from types import FrameType


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 4 or args[2] != "--":
        sys.stderr.write("usage: _launcher.py STDOUT STDERR -- COMMAND [ARG...]\n")
        return 2
    out_path, err_path, argv = args[0], args[1], args[3:]
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    out_fd = os.open(out_path, flags, 0o644)
    err_fd = os.open(err_path, flags, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    child = 0

    def forward(signum: int, frame: FrameType | None) -> None:
        # The command runs in its own process group: end it (and what it started).
        if child > 0:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    start = time.perf_counter()
    child = os.fork()
    if child == 0:
        try:
            os.setpgid(0, 0)
            os.dup2(null_fd, 0)
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(2, f"cannot run {argv[0]}: {exc}\n".encode())
        os._exit(127)
    with contextlib.suppress(OSError):  # fails once the child has exec'd (it set it itself)
        os.setpgid(child, child)
    _, status, usage = os.wait4(child, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    print(f"{code} {usage.ru_maxrss} {usage.ru_utime!r} {usage.ru_stime!r} {wall!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
