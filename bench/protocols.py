"""Per-protocol setup, and the case table keyed by protocol.

A protocol knows how to start its server(s), where on this machine the
server writes, how FileFerry and rclone reach it, which baselines to run and
which transport (cipher) each client ends up with. Adding FTPS later means:

1. a ``FtpsBench(ProtocolBench)`` that starts an FTPS server on 127.0.0.1
   (e.g. pyftpdlib's ``TLS_FTPHandler`` or vsftpd, with a generated
   certificate whose fingerprint FileFerry pins), writes a FileFerry
   destination ``url: ftps://...`` and an rclone ``type = ftp`` remote with
   ``explicit_tls = true`` and ``ca_cert`` (no ``no_check_certificate``), and
   offers a baseline such as ``curl --ssl-reqd -T FILE ftp://...``;
2. ``PROTOCOLS["ftps"] = FtpsBench`` and a row in ``CASES``.

The runner, the measurements and the reports need no change.
"""

from __future__ import annotations

import os
import pwd
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import sshkex
from bench.data import Workload
from bench.servers import S3Server, SshdHandle, start_ssh_server
from bench.tools import CurlS3Get, FileFerry, OpenSshSftp, Rclone, RunDir, Variant

__all__ = ["CASES", "PROTOCOLS", "BenchContext", "ProtocolBench", "SftpBench"]

# The case table, keyed by protocol: (workload, integrity checks on?).
CASES: dict[str, tuple[tuple[str, bool], ...]] = {
    "sftp": (("big", True), ("big", False), ("small", True), ("small", False)),
    # "ftps": (("big", True), ("big", False), ("small", True), ("small", False)),
}

SFTP_GCM = "aes128-gcm@openssh.com"


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


class ProtocolBench(ABC):
    name: str

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
    def transports(self) -> list[tuple[str, str, str, str]]:
        """(client, its banner, negotiated cipher, compression) for the report."""

    @abstractmethod
    def configurations(self) -> dict[str, str]:
        """Title → text of every tool configuration, for the report."""

    def describe(self) -> dict[str, str]:
        return {}


class SftpBench(ProtocolBench):
    """OpenSSH's sshd: the shell port (md5sum works) and the SFTP-only port."""

    name = "sftp"

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

    def transports(self) -> list[tuple[str, str, str, str]]:
        return [(client, self._offers[client][0], cipher, self._offers[client][1])
                for client, cipher in self._ciphers.items()]


PROTOCOLS: dict[str, type[ProtocolBench]] = {"sftp": SftpBench}
