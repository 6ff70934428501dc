"""The servers the benchmark talks to, all on 127.0.0.1, and the tools it needs.

Nothing here launches a server itself: moto's S3 server is
``fileferry.sandbox.s3.MotoServer``, OpenSSH's sshd is the test suite's
``tests.servers.sshd.start_sshd`` and ProFTPD (explicit FTPS) is the test
suite's ``tests.servers.proftpd.start_proftpd``. All are registered on an
``ExitStack`` so they stop on success, on an exception and on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from tests.servers.proftpd import MODULE_DIR, ProftpdServer, start_proftpd
from tests.servers.sshd import SshdServer, start_sshd

from bench.measure import BenchError, children_of, find_pid, process_cpu_seconds
from fileferry.sandbox.s3 import MotoServer
from fileferry.sandbox.tls import TestPki, make_test_pki

__all__ = [
    "FtpsHandle",
    "S3Server",
    "SshdHandle",
    "become_subreaper",
    "ensure_command",
    "start_ftps_server",
    "start_s3",
    "start_ssh_server",
]

_PR_SET_CHILD_SUBREAPER = 36


def ensure_command(command: str, package: str, *, optional: bool = False) -> str | None:
    """The path of ``command``; installs Debian's ``package`` (as root) when it is missing."""
    found = shutil.which(command) or (command if Path(command).is_file() else None)
    if found:
        return found
    if os.geteuid() != 0:
        if optional:
            return None
        raise BenchError(f"{command} is missing: apt-get install -y {package} (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        res = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if res.returncode != 0 and not optional:
            raise BenchError(f"apt-get install {package} failed: {res.stderr.strip()[-500:]}")
    found = shutil.which(command) or (command if Path(command).is_file() else None)
    if found is None and not optional:
        raise BenchError(f"{command} still missing after installing {package}")
    return found


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    pid: int
    access_key: str = "bench"
    secret_key: str = "bench"
    region: str = "us-east-1"

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)


def start_s3(stack: ExitStack, workdir: Path) -> S3Server:
    """moto's S3 server in a child process; stopped when ``stack`` closes."""
    moto = stack.enter_context(MotoServer(workdir))
    if moto.pid is None:
        raise BenchError("moto's server exited right after it started; see moto.log")
    return S3Server(endpoint_url=moto.endpoint_url, pid=moto.pid)


def become_subreaper() -> bool:
    """Adopt orphaned descendants (PR_SET_CHILD_SUBREAPER) so their CPU can be counted.

    sshd's per-connection monitor exits without reaping the session process
    that runs as the user (encryption, SFTP, md5sum); that process would then
    be re-parented to init and its CPU lost. As a subreaper the harness
    inherits it and reaps it in ``SshdHandle.cpu_seconds``.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


@dataclass
class SshdHandle:
    """A running test sshd: its master process and the user its sessions run as."""

    server: SshdServer
    pid: int
    uid: int
    orphan_cpu_s: float = 0.0

    def _reap_orphans(self) -> bool:
        """Reap our adopted zombies of the sshd user; True while any of its processes live."""
        me, alive = os.getpid(), False
        if self.uid == os.geteuid():  # not root: sessions run as us, nothing to tell apart
            return False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid != self.uid:
                    continue
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == me:
                with contextlib.suppress(ChildProcessError):
                    pid, _, usage = os.wait4(int(entry.name), os.WNOHANG)
                    if pid:
                        self.orphan_cpu_s += usage.ru_utime + usage.ru_stime
                        continue
            alive = True
        return alive

    def cpu_seconds(self, timeout: float = 5.0) -> float:
        """sshd's CPU so far, finished sessions included (sftp-server, md5sum, crypto).

        Waits (up to ``timeout``) for the sessions of the last run to end: the
        master's reaped children are in its cutime, their orphans are reaped here.
        """
        deadline = time.monotonic() + timeout
        while True:
            alive = self._reap_orphans()
            if (not alive and not children_of(self.pid)) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return process_cpu_seconds(self.pid) + self.orphan_cpu_s


def start_ssh_server(stack: ExitStack, workdir: Path) -> SshdHandle:
    """OpenSSH's sshd (shell port + SFTP-only port, throw-away user as root)."""
    ensure_command("/usr/sbin/sshd", "openssh-server")
    server, stop = start_sshd(workdir)
    stack.callback(stop)
    pid_file = workdir / "sshd.pid"
    pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else find_pid(
        "-f", str(workdir / "sshd_config"))
    return SshdHandle(server=server, pid=pid, uid=pwd.getpwnam(server.username).pw_uid)


@dataclass
class FtpsHandle:
    """A running test ProFTPD (explicit FTPS), its master process and its throw-away PKI."""

    server: ProftpdServer
    pki: TestPki
    pid: int
    workdir: Path

    @property
    def tls_log(self) -> Path:
        return self.workdir / "tls.log"

    def cpu_seconds(self, timeout: float = 5.0) -> float:
        """ProFTPD's CPU so far: the master and every finished session (TLS, mod_digest).

        ProFTPD forks one session process per connection (and keeps it as its
        child, reaping it when it ends), so waiting until the master has no
        children makes the last run's sessions part of its cutime.
        """
        deadline = time.monotonic() + timeout
        while children_of(self.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        return process_cpu_seconds(self.pid)


def start_ftps_server(stack: ExitStack, workdir: Path) -> FtpsHandle:
    """ProFTPD with mod_tls (explicit FTPS, TLS required) and mod_digest, as root.

    Its certificate comes from a fresh throw-away CA (``fileferry.sandbox.tls``);
    the clients trust that CA's file, nothing else.
    """
    ensure_command("/usr/sbin/proftpd", "proftpd-core")
    if not (MODULE_DIR / "mod_tls.so").exists() or not (MODULE_DIR / "mod_digest.so").exists():
        ensure_command(str(MODULE_DIR / "mod_tls.so"), "proftpd-mod-crypto")
    if os.geteuid() != 0:
        raise BenchError("the FTPS server needs root (it creates a throw-away local user)")
    pki = make_test_pki(workdir / "pki")
    server_dir = workdir / "proftpd"
    try:
        server, stop = start_proftpd(server_dir, pki)
    except RuntimeError as exc:
        raise BenchError(f"ProFTPD did not start: {exc}") from exc
    stack.callback(stop)
    pid = int((server_dir / "proftpd.pid").read_text().split()[0])
    return FtpsHandle(server=server, pki=pki, pid=pid, workdir=server_dir)
