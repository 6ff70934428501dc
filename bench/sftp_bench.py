"""SFTP: OpenSSH's sshd, FileFerry and rclone against it, OpenSSH's ``sftp`` as the ceiling.

sshd offers a shell port (``md5sum`` works: FileFerry's ``verify: auto``
and rclone's hash check ask the server) and an SFTP-only port (FileFerry
reads the file back). Case 6 puts the delay proxy in front of the shell port
for all three tools; their known_hosts name the proxy's port with the same
pinned host key.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from bench import sshkex
from bench.cases import Case
from bench.data import Workload
from bench.measure import BenchError
from bench.protocols import (
    BenchContext,
    ProtocolBench,
    TransportSection,
    fileferry_transfer_settings,
)
from bench.servers import SshdHandle, start_ssh_server
from bench.tools import CurlS3Get, FileFerry, OpenSshSftp, Rclone, RunDir, Variant

__all__ = ["SFTP_GCM", "SftpBench", "start_delay_proxy"]

SFTP_GCM = "aes128-gcm@openssh.com"
PROXY_DELAY_MS = 25


def start_delay_proxy(stack: ExitStack, target_port: int, delay_ms: float, env: dict[str, str],
                      repo: Path) -> int:
    """``bench.delayproxy`` in its own process (its CPU is not the tools'); returns its port."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.delayproxy", "--target-port",
                             str(target_port), "--delay-ms", str(delay_ms)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=repo,
                            env={**env, "PYTHONPATH": str(repo)})

    def stop() -> None:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    stack.callback(stop)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        raise BenchError(f"the delay proxy did not start (it said {line!r})")
    return int(line)


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
        self.proxy_port: int | None = None

    # -- server -----------------------------------------------------------------------------

    @property
    def sshd(self) -> SshdHandle:
        if self._sshd is None:
            raise RuntimeError("SftpBench.start() first")
        return self._sshd

    @property
    def confs(self) -> Path:
        return self.ctx.workdir / "conf"

    def start(self, stack: ExitStack) -> None:
        self._sshd = start_ssh_server(stack, (self.ctx.workdir / "sshd").resolve())
        owner = pwd.getpwnam(self._sshd.server.username)
        self._uid, self._gid = owner.pw_uid, owner.pw_gid
        self.confs.mkdir(exist_ok=True)
        server = self._sshd.server
        for verify in ("auto", "none"):
            self._write_fileferry_config(self.confs / f"fileferry-{verify}.yaml",
                                         server.shell_port, verify)
        self._write_fileferry_config(self.confs / "fileferry-sftp-only.yaml",
                                     server.sftp_only_port, "auto")
        self._write_rclone_config(self.confs / "rclone.conf", server.shell_port)

    def prepare(self, case: Case, stack: ExitStack) -> None:
        if not case.proxy or self.proxy_port is not None:
            return
        server = self.sshd.server
        repo = Path(__file__).resolve().parents[1]
        self.proxy_port = start_delay_proxy(stack, server.shell_port, PROXY_DELAY_MS,
                                            self.ctx.env, repo)
        # The same pinned key, for the proxy's address (clients look up [host]:port).
        text = server.known_hosts_file.read_text()
        self._proxy_known_hosts.write_text(text.replace(f"]:{server.shell_port} ",
                                                        f"]:{self.proxy_port} "))
        self._write_fileferry_config(self.confs / "fileferry-auto-proxy.yaml", self.proxy_port,
                                     "auto", self._proxy_known_hosts)
        self._write_rclone_config(self.confs / "rclone-proxy.conf", self.proxy_port,
                                  self._proxy_known_hosts)

    @property
    def _proxy_known_hosts(self) -> Path:
        return self.confs / "known_hosts-proxy"

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

    def _fileferry_settings(self, port: int, verify: str,
                            known_hosts: Path | None = None) -> dict[str, Any]:
        server = self.sshd.server
        return {
            "s3": {"endpoint_url": self.ctx.s3.endpoint_url, "region": self.ctx.s3.region},
            "transfer": fileferry_transfer_settings(self.ctx),
            "destinations": {"bench": {
                "url": f"sftp://{server.username}@127.0.0.1:{port}{server.root}/",
                "private_key_file": str(server.client_key_file),
                "known_hosts": str(known_hosts or server.known_hosts_file),
                "verify": verify,
                "on_conflict": "fail",
            }},
            "store": {"url": f"sqlite:///{self.ctx.workdir / 'fileferry.db'}"},
        }

    def workflow_settings(self) -> dict[str, Any]:
        """Case 7's destination: the shell port, ``verify: auto`` (a copy to extend)."""
        return self._fileferry_settings(self.sshd.server.shell_port, "auto")

    def _write_fileferry_config(self, path: Path, port: int, verify: str,
                                known_hosts: Path | None = None) -> Path:
        settings = self._fileferry_settings(port, verify, known_hosts)
        path.write_text(yaml.safe_dump(settings, sort_keys=False))
        return path

    def _write_rclone_config(self, path: Path, port: int,
                             known_hosts: Path | None = None) -> Path:
        s3, server = self.ctx.s3, self.sshd.server
        path.write_text(
            "[s3]\ntype = s3\nprovider = Other\n"
            f"access_key_id = {s3.access_key}\nsecret_access_key = {s3.secret_key}\n"
            f"endpoint = {s3.endpoint_url}\nregion = {s3.region}\n\n"
            "[dst]\ntype = sftp\nhost = 127.0.0.1\n"
            f"port = {port}\nuser = {server.username}\nkey_file = {server.client_key_file}\n"
            f"known_hosts_file = {known_hosts or server.known_hosts_file}\n")
        return path

    def ssh_options(self, known_hosts: Path | None = None) -> list[str]:
        server = self.sshd.server
        return ["-F", "/dev/null", "-i", str(server.client_key_file),
                "-o", f"UserKnownHostsFile={known_hosts or server.known_hosts_file}",
                "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes"]

    def configurations(self) -> dict[str, str]:
        server = self.sshd.server
        options = " ".join(self.ssh_options())
        return {
            "FileFerry: fileferry-auto.yaml (checks on; checks off differs only in "
            "`verify: none`; the SFTP-only row uses the SFTP-only port, case 6 the delay "
            "proxy's port)":
                (self.confs / "fileferry-auto.yaml").read_text(),
            "FileFerry command":
                f"{self.ctx.fileferry} transfer --config fileferry-auto.yaml --json "
                "SOURCE bench:RUN_DIR/",
            "rclone: rclone.conf (as left after the runs: rclone itself adds the shell "
            "type and hash commands it detected on first use)":
                (self.confs / "rclone.conf").read_text(),
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
        out = {"sshd": f"shell port {server.shell_port}, SFTP-only port "
                       f"{server.sftp_only_port} (ForceCommand internal-sftp), user "
                       f"{server.username}, host key {server.host_key_fingerprint}"}
        if self.proxy_port is not None:
            out["delay proxy (case 6)"] = (
                f"`python -m bench.delayproxy` on port {self.proxy_port} → sshd's shell port, "
                f"{PROXY_DELAY_MS} ms added each way (every round trip ≥ "
                f"{2 * PROXY_DELAY_MS} ms), unlimited bandwidth, its own process")
        return out

    # -- rows -------------------------------------------------------------------------------

    def variants(self, case: Case, workload: Workload) -> list[Variant]:
        ctx, server, checks = self.ctx, self.sshd.server, case.checks
        verify = "auto" if checks else "none"
        port, known_hosts, suffix = server.shell_port, None, ""
        if case.proxy:
            assert self.proxy_port is not None, "prepare() starts the proxy"
            port, known_hosts, suffix = self.proxy_port, self._proxy_known_hosts, "-proxy"
        rows: list[Variant] = [
            FileFerry(key="fileferry", tool=f"FileFerry (verify: {verify})", role="fileferry",
                      client_id="fileferry", cli=ctx.fileferry,
                      config=self.confs / f"fileferry-{verify}{suffix}.yaml", workload=workload,
                      expect_verified="server-md5" if checks else "none"),
        ]
        if checks and not case.proxy and not case.competitors_only:
            rows.append(FileFerry(key="fileferry-sftp-only",
                                  tool="FileFerry (verify: auto, SFTP-only account)",
                                  role="fileferry", client_id="fileferry", cli=ctx.fileferry,
                                  config=self.confs / "fileferry-sftp-only.yaml",
                                  workload=workload, expect_verified="readback-sha256"))
        rows.append(Rclone(key="rclone", tool="rclone" + ("" if checks else
                                                          " (--ignore-checksum)"),
                           role="rclone", client_id="rclone", binary=ctx.rclone,
                           config=self.confs / f"rclone{suffix}.conf", workload=workload,
                           checks=checks, transfers=ctx.parallel))
        if not case.competitors_only:
            rows += self._baselines(workload, checks, port, known_hosts)
        if not checks and workload.single_object and ctx.curl and not case.proxy:
            rows.append(CurlS3Get(key="s3-get", tool="S3 GET only (curl → /dev/null)",
                                  role="context", s3=ctx.s3, workload=workload))
        rows = self.with_baseline(rows)
        for row in rows:
            row.cipher = self._ciphers.get(row.client_id or "", "—")
        return rows

    def _baselines(self, workload: Workload, checks: bool, port: int,
                   known_hosts: Path | None) -> list[Variant]:
        rows: list[Variant] = []
        for key, cipher in (("sftp", None), ("sftp-gcm", SFTP_GCM)):
            name = "OpenSSH sftp" + (f" -c {cipher.split('@')[0]}" if cipher else "")
            rows.append(OpenSshSftp(key=key, tool=name + (" + ssh md5sum" if checks else ""),
                                    role="baseline", client_id=f"ssh-{cipher or 'default'}",
                                    ssh_options=self.ssh_options(known_hosts), port=port,
                                    user=self.sshd.server.username, workload=workload,
                                    cipher_option=cipher, with_md5=checks))
        return rows

    # -- transports -------------------------------------------------------------------------

    def _sniff_commands(self) -> dict[str, Callable[[int], list[str]]]:
        user = self.sshd.server.username

        def fileferry(port: int) -> list[str]:
            path = self._write_fileferry_config(self.confs / "sniff-fileferry.yaml", port,
                                                "none")
            return [self.ctx.fileferry, "check", "bench", "--config", str(path), "--json"]

        def rclone(port: int) -> list[str]:
            path = self._write_rclone_config(self.confs / "sniff-rclone.conf", port)
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
