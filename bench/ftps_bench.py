"""FTPS: ProFTPD with explicit FTPS, FileFerry (``ftps://`` + ``ca_file``) against rclone.

No baseline: OpenSSH has no FTPS, and curl 7.88's multi-file FTPS upload
(``curl -T "{a,b,…}"``) against this ProFTPD fails with ``425`` on the second
file or leaves empty files, so it cannot serve as a ceiling.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from bench.cases import Case
from bench.data import Workload
from bench.measure import BenchError
from bench.protocols import (
    BenchContext,
    ProtocolBench,
    TransportSection,
    fileferry_transfer_settings,
)
from bench.servers import FtpsHandle, start_ftps_server
from bench.tools import FileFerry, Rclone, RunDir, Variant

__all__ = ["FTPS_LABELS", "FtpsBench"]

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
            "transfer": fileferry_transfer_settings(self.ctx),
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

    def variants(self, case: Case, workload: Workload) -> list[Variant]:
        ctx, checks = self.ctx, case.checks
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


