"""Per-protocol setup, and the case table keyed by protocol.

A protocol knows how to start its server(s), where on this machine the
server writes, how FileFerry and rclone reach it, which baselines to run and
which transport (cipher) each client ends up with:

* ``SftpBench``: OpenSSH's sshd (a shell port and an SFTP-only port), with
  OpenSSH's own ``sftp`` as the baseline;
* ``FtpsBench``: ProFTPD with explicit FTPS (``TLSRequired on``) and
  mod_digest, its certificate from a throw-away CA that FileFerry
  (``ca_file``) and rclone (Go's ``SSL_CERT_FILE``) trust, nothing else. No
  baseline: OpenSSH has no FTPS, and curl 7.88's multi-file FTPS upload
  against ProFTPD fails (``425``) or leaves empty files.

The runner, the measurements and the reports need no change for a new one.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import sshkex
from bench.data import Workload
from bench.measure import BenchError
from bench.servers import (
    FtpsHandle,
    S3Server,
    SshdHandle,
    start_ftps_server,
    start_ssh_server,
)
from bench.tools import CurlS3Get, FileFerry, OpenSshSftp, Rclone, RunDir, Variant

__all__ = ["CASES", "PROTOCOLS", "BenchContext", "FtpsBench", "ProtocolBench", "SftpBench",
           "TransportSection"]

# The case table, keyed by protocol: (workload, integrity checks on?).
CASES: dict[str, tuple[tuple[str, bool], ...]] = {
    "sftp": (("big", True), ("big", False), ("small", True), ("small", False)),
    "ftps": (("big", True), ("big", False), ("small", True), ("small", False)),
}

SFTP_GCM = "aes128-gcm@openssh.com"


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
    def variants(self, workload: Workload, checks: bool) -> list[Variant]:
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


class SftpBench(ProtocolBench):
    """OpenSSH's sshd: the shell port (md5sum works) and the SFTP-only port."""

    name = "sftp"
    server_label = "sshd"

    def __init__(self, ctx: BenchContext) -> None:
        super().__init__(ctx)
        self._sshd: SshdHandle | None = None
        self._uid = self._gid = -1
        self._ciphers: dict[str, str] = {}
        self._offers: dict[str, tuple[str, str]] = {}

    # -- server -----------------------------------------------------------------------------

    @property
    def sshd(self) -> SshdHandle:
        if self._sshd is None:
            raise RuntimeError("SftpBench.start() first")
        return self._sshd

    def start(self, stack: ExitStack) -> None:
        self._sshd = start_ssh_server(stack, (self.ctx.workdir / "sshd").resolve())
        owner = pwd.getpwnam(self._sshd.server.username)
        self._uid, self._gid = owner.pw_uid, owner.pw_gid
        confs = self.ctx.workdir / "conf"
        confs.mkdir(exist_ok=True)
        server = self._sshd.server
        for verify in ("auto", "none"):
            self._write_fileferry_config(confs / f"fileferry-{verify}.yaml", server.shell_port,
                                         verify)
        self._write_fileferry_config(confs / "fileferry-sftp-only.yaml", server.sftp_only_port,
                                     "auto")
        self._write_rclone_config(confs / "rclone.conf", server.shell_port)

    def server_cpu_seconds(self) -> float:
        return self.sshd.cpu_seconds()

    def make_run_dir(self, name: str, evidence: bool) -> RunDir:
        root = self.sshd.server.root
        local = root / name
        local.mkdir()
        os.chown(local, self._uid, self._gid)
        logs = self.ctx.workdir / "logs" / name
        logs.mkdir(parents=True)
        return RunDir(local=local, remote=str(local), rel=name, logs=logs, evidence=evidence)

    # -- configurations ---------------------------------------------------------------------

    def _fileferry_settings(self, port: int, verify: str) -> dict[str, Any]:
        server = self.sshd.server
        return {
            "s3": {"endpoint_url": self.ctx.s3.endpoint_url, "region": self.ctx.s3.region},
            "transfer": {"default_chunk_size": self.ctx.chunk_size,
                         "max_parallel_threads": self.ctx.parallel,
                         "enable_compression": False},
            "destinations": {"bench": {
                "url": f"sftp://{server.username}@127.0.0.1:{port}{server.root}/",
                "private_key_file": str(server.client_key_file),
                "known_hosts": str(server.known_hosts_file),
                "verify": verify,
                "on_conflict": "fail",
            }},
            "store": {"url": f"sqlite:///{self.ctx.workdir / 'fileferry.db'}"},
        }

    def _write_fileferry_config(self, path: Path, port: int, verify: str) -> Path:
        path.write_text(yaml.safe_dump(self._fileferry_settings(port, verify), sort_keys=False))
        return path

    def _write_rclone_config(self, path: Path, port: int) -> Path:
        s3, server = self.ctx.s3, self.sshd.server
        path.write_text(
            "[s3]\ntype = s3\nprovider = Other\n"
            f"access_key_id = {s3.access_key}\nsecret_access_key = {s3.secret_key}\n"
            f"endpoint = {s3.endpoint_url}\nregion = {s3.region}\n\n"
            "[dst]\ntype = sftp\nhost = 127.0.0.1\n"
            f"port = {port}\nuser = {server.username}\nkey_file = {server.client_key_file}\n"
            f"known_hosts_file = {server.known_hosts_file}\n")
        return path

    def ssh_options(self) -> list[str]:
        server = self.sshd.server
        return ["-F", "/dev/null", "-i", str(server.client_key_file),
                "-o", f"UserKnownHostsFile={server.known_hosts_file}",
                "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes"]

    def configurations(self) -> dict[str, str]:
        confs = self.ctx.workdir / "conf"
        server = self.sshd.server
        options = " ".join(self.ssh_options())
        return {
            "FileFerry: fileferry-auto.yaml (checks on; checks off differs only in "
            "`verify: none`; the SFTP-only row uses the SFTP-only port)":
                (confs / "fileferry-auto.yaml").read_text(),
            "FileFerry command":
                f"{self.ctx.fileferry} transfer --config fileferry-auto.yaml --json "
                "SOURCE bench:RUN_DIR/",
            "rclone: rclone.conf (as left after the runs: rclone itself adds the shell "
            "type and hash commands it detected on first use)":
                (confs / "rclone.conf").read_text(),
            "rclone command":
                f"rclone --config rclone.conf copy [--ignore-checksum] --transfers "
                f"{self.ctx.parallel} --retries 1 SOURCE dst:/RUN_DIR/",
            "OpenSSH commands":
                f"sftp -b BATCH [-c {SFTP_GCM}] {options} -P PORT {server.username}@127.0.0.1\n"
                "BATCH: put LOCAL_FILE /RUN_DIR/NAME  (many files: put LOCAL_DIR/* /RUN_DIR/)\n"
                f"checks on, afterwards: ssh [-c {SFTP_GCM}] {options} -p PORT "
                f"{server.username}@127.0.0.1 'cd /RUN_DIR && md5sum -- *'",
        }

    def describe(self) -> dict[str, str]:
        server = self.sshd.server
        return {"sshd": f"shell port {server.shell_port}, SFTP-only port "
                        f"{server.sftp_only_port} (ForceCommand internal-sftp), user "
                        f"{server.username}, host key {server.host_key_fingerprint}"}

    # -- rows -------------------------------------------------------------------------------

    def variants(self, workload: Workload, checks: bool) -> list[Variant]:
        ctx, server = self.ctx, self.sshd.server
        confs = ctx.workdir / "conf"
        verify = "auto" if checks else "none"
        rows: list[Variant] = [
            FileFerry(key="fileferry", tool=f"FileFerry (verify: {verify})", role="fileferry",
                      client_id="fileferry", cli=ctx.fileferry,
                      config=confs / f"fileferry-{verify}.yaml", workload=workload,
                      expect_verified="server-md5" if checks else "none"),
        ]
        if checks:
            rows.append(FileFerry(key="fileferry-sftp-only",
                                  tool="FileFerry (verify: auto, SFTP-only account)",
                                  role="fileferry", client_id="fileferry", cli=ctx.fileferry,
                                  config=confs / "fileferry-sftp-only.yaml", workload=workload,
                                  expect_verified="readback-sha256"))
        rows.append(Rclone(key="rclone", tool="rclone" + ("" if checks else
                                                          " (--ignore-checksum)"),
                           role="rclone", client_id="rclone", binary=ctx.rclone,
                           config=confs / "rclone.conf", workload=workload, checks=checks,
                           transfers=ctx.parallel))
        for key, cipher in (("sftp", None), ("sftp-gcm", SFTP_GCM)):
            name = "OpenSSH sftp" + (f" -c {cipher.split('@')[0]}" if cipher else "")
            rows.append(OpenSshSftp(key=key, tool=name + (" + ssh md5sum" if checks else ""),
                                    role="baseline", client_id=f"ssh-{cipher or 'default'}",
                                    ssh_options=self.ssh_options(), port=server.shell_port,
                                    user=server.username, workload=workload,
                                    cipher_option=cipher, with_md5=checks))
        if not checks and workload.single_object and ctx.curl:
            rows.append(CurlS3Get(key="s3-get", tool="S3 GET only (curl → /dev/null)",
                                  role="context", s3=ctx.s3, workload=workload))
        rows = self.with_baseline(rows)
        for row in rows:
            row.cipher = self._ciphers.get(row.client_id or "", "—")
        return rows

    # -- transports -------------------------------------------------------------------------

    def _sniff_commands(self) -> dict[str, Callable[[int], list[str]]]:
        confs = self.ctx.workdir / "conf"
        user = self.sshd.server.username

        def fileferry(port: int) -> list[str]:
            path = self._write_fileferry_config(confs / "sniff-fileferry.yaml", port, "none")
            return [self.ctx.fileferry, "check", "bench", "--config", str(path), "--json"]

        def rclone(port: int) -> list[str]:
            path = self._write_rclone_config(confs / "sniff-rclone.conf", port)
            return [self.ctx.rclone, "--config", str(path), "lsf", "dst:/", "--retries", "1",
                    "--low-level-retries", "1", "--contimeout", "10s"]

        def ssh(cipher: str | None) -> Callable[[int], list[str]]:
            return lambda port: ["sftp", "-b", "/dev/null", *(["-c", cipher] if cipher else []),
                                 *self.ssh_options(), "-P", str(port), f"{user}@127.0.0.1"]

        return {"fileferry": fileferry, "rclone": rclone, "ssh-default": ssh(None),
                f"ssh-{SFTP_GCM}": ssh(SFTP_GCM)}

    def identify_transports(self) -> None:
        server = sshkex.server_offer(self.sshd.server.shell_port)
        sniff_dir = self.ctx.workdir / "sniff"
        sniff_dir.mkdir(exist_ok=True)
        for client, command in self._sniff_commands().items():
            offer = sshkex.client_offer(command, server.banner, env=self.ctx.env, cwd=sniff_dir)
            self._ciphers[client] = sshkex.negotiate(offer["cipher_c2s"], server["cipher_c2s"])
            compression = sshkex.negotiate(offer["compression_c2s"], server["compression_c2s"])
            self._offers[client] = (offer.banner, compression)

    def transports(self) -> TransportSection:
        return TransportSection(
            title="Ciphers (SFTP)",
            intro="Read from each client's key-exchange offer (its KEXINIT) against sshd's: the "
                  "first cipher in the client's list that sshd also offers.",
            head=["Client", "Banner", "Cipher (client → server)", "Compression"],
            rows=[[client, self._offers[client][0], cipher, self._offers[client][1]]
                  for client, cipher in self._ciphers.items()])


_TLS_ACCEPTED = re.compile(r"mod_tls/[^\[]*\[(\d+)\]: (TLSv[\d.]+) (data )?connection "
                           r"accepted, using cipher (\S+)(.*)$", re.MULTILINE)
FTPS_LABELS = {"server-md5": "server-md5 (FTP HASH) + ETag", "none": "ETag + size",
               "size": "size (FTP MLST) + ETag"}


class FtpsBench(ProtocolBench):
    """ProFTPD, explicit FTPS: FileFerry (``ftps://`` + ``ca_file``) against rclone's ftp backend.

    The FTP user's password reaches FileFerry as ``${BENCH_FTP_PASSWORD}`` and
    rclone as its obscured ``pass``; rclone trusts the throw-away CA through
    Go's ``SSL_CERT_FILE`` (rclone 1.60's ftp backend has no CA option, and
    the certificate is still fully verified: without it rclone refuses with
    "certificate signed by unknown authority").
    """

    name = "ftps"
    server_label = "proftpd"
    PASSWORD_VAR = "BENCH_FTP_PASSWORD"
    RCLONE_TRANSFERS = 1
    """rclone 1.60 shares one TLS session cache among its FTP control connections, so with
    several connections a data connection resumes another connection's session and ProFTPD
    refuses it (``425``, rclone#7234): with ``--transfers 5`` about 1 file in 10 fails.
    One transfer at a time works."""

    def __init__(self, ctx: BenchContext) -> None:
        super().__init__(ctx)
        self._ftps: FtpsHandle | None = None
        self._uid = self._gid = -1
        self._tls: dict[str, tuple[str, str, str]] = {}

    @property
    def ftps(self) -> FtpsHandle:
        if self._ftps is None:
            raise RuntimeError("FtpsBench.start() first")
        return self._ftps

    def start(self, stack: ExitStack) -> None:
        self._ftps = start_ftps_server(stack, (self.ctx.workdir / "ftps").resolve())
        owner = pwd.getpwnam(self._ftps.server.username)
        self._uid, self._gid = owner.pw_uid, owner.pw_gid
        confs = self.ctx.workdir / "conf"
        confs.mkdir(exist_ok=True)
        for verify in ("auto", "none", "size"):
            path = confs / f"fileferry-ftps-{verify}.yaml"
            path.write_text(yaml.safe_dump(self._fileferry_settings(verify), sort_keys=False))
        self._write_rclone_config(confs / "rclone-ftps.conf")

    def server_cpu_seconds(self) -> float:
        return self.ftps.cpu_seconds()

    def make_run_dir(self, name: str, evidence: bool) -> RunDir:
        local = self.ftps.server.root / name
        local.mkdir()
        os.chown(local, self._uid, self._gid)
        logs = self.ctx.workdir / "logs" / name
        logs.mkdir(parents=True)
        # The FTP user is chrooted (DefaultRoot ~) into the server's root.
        return RunDir(local=local, remote=f"/{name}", rel=name, logs=logs, evidence=evidence)

    # -- configurations ---------------------------------------------------------------------

    def _fileferry_settings(self, verify: str) -> dict[str, Any]:
        server = self.ftps.server
        return {
            "s3": {"endpoint_url": self.ctx.s3.endpoint_url, "region": self.ctx.s3.region},
            "transfer": {"default_chunk_size": self.ctx.chunk_size,
                         "max_parallel_threads": self.ctx.parallel,
                         "enable_compression": False},
            "destinations": {"bench": {
                "url": f"ftps://{server.username}@127.0.0.1:{server.port}/",
                "password": "${" + self.PASSWORD_VAR + "}",
                "ca_file": str(self.ftps.pki.ca_file),
                "verify": verify,
                "on_conflict": "fail",
            }},
            "store": {"url": f"sqlite:///{self.ctx.workdir / 'fileferry.db'}"},
        }

    def _write_rclone_config(self, path: Path) -> Path:
        s3, server = self.ctx.s3, self.ftps.server
        obscured = subprocess.run([self.ctx.rclone, "obscure", "-"], input=server.password,
                                  capture_output=True, text=True, env=self.ctx.env, check=False)
        if obscured.returncode != 0 or not obscured.stdout.strip():
            raise BenchError(f"rclone obscure failed: {obscured.stderr.strip()}")
        path.write_text(
            "[s3]\ntype = s3\nprovider = Other\n"
            f"access_key_id = {s3.access_key}\nsecret_access_key = {s3.secret_key}\n"
            f"endpoint = {s3.endpoint_url}\nregion = {s3.region}\n\n"
            "[dst]\ntype = ftp\nhost = 127.0.0.1\n"
            f"port = {server.port}\nuser = {server.username}\n"
            f"pass = {obscured.stdout.strip()}\nexplicit_tls = true\n")
        return path

    def _fileferry_env(self) -> dict[str, str]:
        return {self.PASSWORD_VAR: self.ftps.server.password}

    def _rclone_env(self) -> dict[str, str]:
        return {"SSL_CERT_FILE": str(self.ftps.pki.ca_file)}

    def configurations(self) -> dict[str, str]:
        confs = self.ctx.workdir / "conf"
        rclone_conf = re.sub(r"(?m)^pass = .*$", "pass = (the password, obscured by rclone)",
                             (confs / "rclone-ftps.conf").read_text())
        return {
            "FileFerry (FTPS): fileferry-ftps-auto.yaml (checks on; checks off differs only in "
            "`verify: none`, the like-for-like row in `verify: size`)":
                (confs / "fileferry-ftps-auto.yaml").read_text(),
            "FileFerry command (FTPS)":
                f"{self.PASSWORD_VAR}=… {self.ctx.fileferry} transfer --config "
                "fileferry-ftps-auto.yaml --json SOURCE bench:RUN_DIR/",
            "rclone (FTPS): rclone-ftps.conf": rclone_conf,
            "rclone command (FTPS)":
                f"SSL_CERT_FILE={self.ftps.pki.ca_file} rclone --config rclone-ftps.conf copy "
                f"[--ignore-checksum] --transfers {self.RCLONE_TRANSFERS} --retries 1 SOURCE "
                "dst:/RUN_DIR/",
        }

    def in_flight(self) -> str:
        return (f"{self.ctx.parallel} files in flight for FileFerry, {self.RCLONE_TRANSFERS} "
                "for rclone (with more, rclone 1.60 breaks ProFTPD's TLS session reuse)")

    def describe(self) -> dict[str, str]:
        server = self.ftps.server
        return {"ProFTPD": f"explicit FTPS on port {server.port} (`TLSRequired on`, TLS 1.2/1.3, "
                           "data connections must resume the control connection's TLS session; "
                           "mod_digest for HASH/XMD5), user "
                           f"{server.username} chrooted to its root, certificate SHA-256 "
                           f"{self.ftps.pki.fingerprint} from a throw-away CA"}

    # -- rows -------------------------------------------------------------------------------

    def variants(self, workload: Workload, checks: bool) -> list[Variant]:
        ctx = self.ctx
        confs = ctx.workdir / "conf"
        verify = "auto" if checks else "none"
        rows: list[Variant] = [
            FileFerry(key="fileferry", tool=f"FileFerry (verify: {verify})", role="fileferry",
                      client_id="fileferry", cli=ctx.fileferry,
                      config=confs / f"fileferry-ftps-{verify}.yaml", workload=workload,
                      expect_verified="server-md5" if checks else "none",
                      labels=FTPS_LABELS, env=self._fileferry_env()),
        ]
        if checks:
            rows.append(FileFerry(key="fileferry-size", tool="FileFerry (verify: size)",
                                  role="fileferry", client_id="fileferry", cli=ctx.fileferry,
                                  config=confs / "fileferry-ftps-size.yaml", workload=workload,
                                  expect_verified="size", labels=FTPS_LABELS,
                                  env=self._fileferry_env()))
        rows.append(Rclone(key="rclone", tool="rclone --transfers 1" + (
                               "" if checks else " --ignore-checksum"),
                           role="rclone", client_id="rclone", binary=ctx.rclone,
                           config=confs / "rclone-ftps.conf", workload=workload, checks=checks,
                           transfers=self.RCLONE_TRANSFERS, hashes=False,
                           env=self._rclone_env()))
        rows = self.with_baseline(rows)
        for row in rows:
            row.cipher = self._tls.get(row.client_id or "", ("", "—", ""))[1]
        return rows

    # -- transports -------------------------------------------------------------------------

    def identify_transports(self) -> None:
        """Run each client once and read what ProFTPD's TLS log says it accepted."""
        confs, sniff = self.ctx.workdir / "conf", self.ctx.workdir / "sniff-ftps"
        sniff.mkdir(exist_ok=True)
        commands = {
            "fileferry": ([self.ctx.fileferry, "check", "bench", "--config",
                           str(confs / "fileferry-ftps-none.yaml"), "--json"],
                          self._fileferry_env()),
            "rclone": ([self.ctx.rclone, "--config", str(confs / "rclone-ftps.conf"), "lsf",
                        "dst:/", "--retries", "1", "--low-level-retries", "1"],
                       self._rclone_env()),
        }
        for client, (argv, extra) in commands.items():
            self.ftps.cpu_seconds()  # let earlier sessions finish and log
            start = self.ftps.tls_log.stat().st_size if self.ftps.tls_log.exists() else 0
            res = subprocess.run(argv, env={**self.ctx.env, **extra}, cwd=sniff,
                                 capture_output=True, text=True, timeout=60, check=False)
            if res.returncode != 0:
                raise BenchError(f"{client} could not reach the FTPS server: "
                                 f"{(res.stderr or res.stdout).strip()[-800:]}")
            self.ftps.cpu_seconds()
            with self.ftps.tls_log.open("rb") as log:
                log.seek(start)
                text = log.read().decode(errors="replace")
            control = data = None
            for match in _TLS_ACCEPTED.finditer(text):
                if match[3] and data is None:
                    data = "resumed" if "resumed session" in match[5] else "new session"
                elif not match[3] and control is None:
                    control = (match[2], match[4])
            if control is None:
                raise BenchError(f"ProFTPD's TLS log shows no TLS session for {client}")
            self._tls[client] = (control[0], control[1], data or "(no data connection)")

    def transports(self) -> TransportSection:
        return TransportSection(
            title="TLS (FTPS)",
            intro="From ProFTPD's TLS log (mod_tls) for one session of each client: the version "
                  "and cipher of the control connection, and whether the data connection "
                  "resumed its TLS session (ProFTPD requires that).",
            head=["Client", "TLS version", "Cipher", "Data connection"],
            rows=[[client, *tls] for client, tls in self._tls.items()])


PROTOCOLS: dict[str, type[ProtocolBench]] = {"sftp": SftpBench, "ftps": FtpsBench}
