"""The commands being compared: one ``Variant`` per table row.

A variant turns a fresh target directory into the command lines to run
(``steps``) and, once they have run, checks what they reported and says which
integrity check the tool made (``check_made``). FileFerry and rclone variants
work for any protocol (they take the protocol's FileFerry config and rclone
remote); the baselines (OpenSSH ``sftp``, ``curl``) belong to one protocol.
"""

from __future__ import annotations

import json
import re
import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.data import Workload
from bench.measure import BenchError
from bench.servers import S3Server

__all__ = [
    "CHECK_LEGEND",
    "CurlS3Get",
    "FileFerry",
    "OpenSshSftp",
    "Rclone",
    "Role",
    "RunDir",
    "Variant",
]

Role = Literal["fileferry", "rclone", "baseline", "context"]

# The short labels used in the tables, and what each means.
CHECK_LEGEND = {
    "server-md5 + ETag": "FileFerry `verify: auto` on a shell account: the server ran `md5sum` "
    "on the temporary file and it matched the MD5 of the streamed bytes, which matched the S3 "
    "ETag; only then the rename into place",
    "readback-sha256 + ETag": "FileFerry `verify: auto` on an SFTP-only account (no shell): the "
    "temporary file was read back over SFTP and its SHA-256 compared; streamed MD5 = S3 ETag",
    "ETag + size": "FileFerry `verify: none`: nothing is checked at the destination, but the "
    "MD5/SHA-256 of the streamed bytes are still computed and the MD5 and size compared with "
    "S3's ETag and Content-Length",
    "server md5sum vs ETag": "rclone's default: after the upload it runs `md5sum FILE` over SSH "
    "(shell port) and compares with the S3 object's MD5 (ETag); sizes are compared too",
    "size only": "rclone `--ignore-checksum`: only the size is compared",
    "server md5sum (2nd ssh)": "OpenSSH baseline with checks: `sftp put`, then one `ssh ... "
    "md5sum` over a second connection, compared by the harness with the MD5 computed when the "
    "data was generated (not timed)",
    "none": "OpenSSH `sftp put` alone: no check",
    "server-md5 (FTP HASH) + ETag": "FileFerry `verify: auto` on FTPS: ProFTPD's mod_digest "
    "computed the temporary file's MD5 (`OPTS HASH MD5` + `HASH`, as offered in `FEAT`) and it "
    "matched the MD5 of the streamed bytes, which matched the S3 ETag; only then the rename "
    "into place",
    "size (FTP MLST) + ETag": "FileFerry `verify: size` on FTPS: the temporary file's size "
    "from `MLST` was compared (the same check rclone makes on FTP); streamed MD5 = S3 ETag",
    "size only (FTP has no hashes)": "rclone on FTP(S): its ftp backend supports no hash at all, "
    "so `rclone copy` compares only sizes, with or without `--ignore-checksum` (its log shows "
    "no hash check)",
    "— (read only)": "context: S3 GET of the same object to /dev/null with curl (no destination)",
}


@dataclass(frozen=True)
class RunDir:
    """Where one run writes, as this machine and as the client see it."""

    local: Path
    remote: str
    rel: str
    logs: Path
    evidence: bool  # warm-up round: ask the tool for proof of the check it made


@dataclass
class Variant(ABC):
    """One row of a case table."""

    key: str
    tool: str
    role: Role
    client_id: str | None = None
    cipher: str = "—"
    notes: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """Added to the children's environment for this row only (e.g. a CA file, a password)."""

    @abstractmethod
    def steps(self, run: RunDir) -> list[list[str]]:
        """The command lines of one run (timed one after the other, usage summed)."""

    @abstractmethod
    def check_made(self, run: RunDir, outputs: list[tuple[Path, Path]]) -> str:
        """Verify the run's own report (raise BenchError) and name the check it made."""


@dataclass
class FileFerry(Variant):
    """The installed CLI: ``fileferry transfer --config X --json SOURCE NAME:PATH``."""

    cli: str = "fileferry"
    config: Path = Path()
    destination: str = "bench"
    workload: Workload | None = None
    expect_verified: str = "server-md5"
    labels: dict[str, str] = field(default_factory=lambda: {
        "server-md5": "server-md5 + ETag", "readback-sha256": "readback-sha256 + ETag",
        "none": "ETag + size"})
    """``verified_by`` → the check label in the tables (the words differ per protocol)."""

    def steps(self, run: RunDir) -> list[list[str]]:
        assert self.workload is not None
        return [[self.cli, "transfer", "--config", str(self.config), "--json",
                 self.workload.s3_uri(), f"{self.destination}:{run.rel}/"]]

    def check_made(self, run: RunDir, outputs: list[tuple[Path, Path]]) -> str:
        assert self.workload is not None
        out, err = outputs[0]
        lines = [ln for ln in out.read_text().splitlines() if ln.strip()]
        try:
            result = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError) as exc:
            raise BenchError(f"FileFerry printed no JSON result ({exc}); stderr: "
                             f"{err.read_text()[-1500:]}") from None
        if result.get("status") != "SUCCEEDED":
            raise BenchError(f"FileFerry transfer {result.get('status')}: {result.get('error')}")
        files = result.get("files", [])
        md5 = {f.name: f.md5 for f in self.workload.files}
        if len(files) != self.workload.count:
            raise BenchError(f"FileFerry reported {len(files)} files, expected "
                             f"{self.workload.count}")
        checks = set()
        for item in files:
            name = item["destination"].rsplit("/", 1)[-1]
            if item["status"] != "DELIVERED" or item["md5"] != md5.get(name):
                raise BenchError(f"FileFerry: {item['destination']} is {item['status']} with "
                                 f"md5 {item['md5']} (expected {md5.get(name)})")
            checks.add(item["verified_by"])
        if checks != {self.expect_verified}:
            raise BenchError(f"FileFerry verified by {sorted(checks)}, expected "
                             f"{self.expect_verified}")
        return self.labels.get(self.expect_verified, self.expect_verified)


_RCLONE_MD5_OK = re.compile(r": (md5|sha1) = [0-9a-f]+ OK$", re.MULTILINE)
_RCLONE_COPIED = re.compile(r": Copied \(new\)$", re.MULTILINE)


@dataclass
class Rclone(Variant):
    """``rclone --config CONF copy [--ignore-checksum] SOURCE REMOTE:DIR``."""

    binary: str = "rclone"
    config: Path = Path()
    remote: str = "dst"
    workload: Workload | None = None
    checks: bool = True
    transfers: int = 5
    hashes: bool = True
    """Whether the remote can hash at all (rclone's ftp backend cannot: sizes only)."""

    def flags(self) -> list[str]:
        return [*([] if self.checks else ["--ignore-checksum"]),
                "--transfers", str(self.transfers), "--retries", "1"]

    def steps(self, run: RunDir) -> list[list[str]]:
        assert self.workload is not None
        evidence = ["-vv", "--log-file", str(run.logs / "rclone.log")] if run.evidence else []
        return [[self.binary, "--config", str(self.config), "copy", *self.flags(), *evidence,
                 self.workload.rclone_source("s3"), f"{self.remote}:{run.remote}/"]]

    def check_made(self, run: RunDir, outputs: list[tuple[Path, Path]]) -> str:
        assert self.workload is not None
        if not self.hashes:
            label = "size only (FTP has no hashes)"
        else:
            label = "server md5sum vs ETag" if self.checks else "size only"
        if not run.evidence:
            return label  # proved on the warm-up run, same binary and configuration
        log = (run.logs / "rclone.log").read_text(errors="replace")
        verified = len(_RCLONE_MD5_OK.findall(log))
        remote_md5 = log.count("Running remote command: md5sum ")
        if not self.hashes:
            copied = len(_RCLONE_COPIED.findall(log))
            if verified or copied != self.workload.count:
                raise BenchError(f"rclone: {copied} files copied and {verified} hash checks, "
                                 f"expected {self.workload.count} and none; see "
                                 f"{run.logs / 'rclone.log'}")
            return label
        if self.checks and verified != self.workload.count:
            raise BenchError(f"rclone verified {verified} of {self.workload.count} files by "
                             f"hash; see {run.logs / 'rclone.log'}")
        if not self.checks and (verified or remote_md5):
            raise BenchError("rclone --ignore-checksum still ran md5sum")
        return label


@dataclass
class OpenSshSftp(Variant):
    """``sftp -b BATCH`` uploading the local copy; with ``md5sum`` over a second ``ssh``."""

    ssh_options: list[str] = field(default_factory=list)
    port: int = 22
    user: str = ""
    workload: Workload | None = None
    cipher_option: str | None = None
    with_md5: bool = False

    def _common(self) -> list[str]:
        cipher = ["-c", self.cipher_option] if self.cipher_option else []
        return [*cipher, *self.ssh_options]

    def steps(self, run: RunDir) -> list[list[str]]:
        assert self.workload is not None and self.workload.local_dir is not None
        batch = run.logs / "sftp.batch"
        if self.workload.single_object:
            name = self.workload.files[0].name
            line = f"put {self.workload.local_dir / name} {run.remote}/{name}"
        else:
            line = f"put {self.workload.local_dir}/* {run.remote}/"
        batch.write_text(line + "\n")
        steps = [["sftp", "-b", str(batch), *self._common(), "-P", str(self.port),
                  f"{self.user}@127.0.0.1"]]
        if self.with_md5:
            steps.append(["ssh", *self._common(), "-p", str(self.port), f"{self.user}@127.0.0.1",
                          f"cd {shlex.quote(run.remote)} && md5sum -- *"])
        return steps

    def check_made(self, run: RunDir, outputs: list[tuple[Path, Path]]) -> str:
        assert self.workload is not None
        if not self.with_md5:
            return "none"
        sums: dict[str, str] = {}
        for line in outputs[1][0].read_text().splitlines():
            if line.strip():
                digest, name = line.split(None, 1)
                sums[name] = digest
        for spec in self.workload.files:
            if sums.get(spec.name) != spec.md5:
                raise BenchError(f"server md5sum of {spec.name} is {sums.get(spec.name)}, "
                                 f"expected {spec.md5}")
        return "server md5sum (2nd ssh)"


@dataclass
class CurlS3Get(Variant):
    """Context: how fast the S3 stand-in serves the object (GET to /dev/null)."""

    s3: S3Server | None = None
    workload: Workload | None = None

    def steps(self, run: RunDir) -> list[list[str]]:
        assert self.s3 is not None and self.workload is not None
        url = f"{self.s3.endpoint_url}/{self.workload.s3_uri()[5:]}"
        return [["curl", "-sSf", "--aws-sigv4", f"aws:amz:{self.s3.region}:s3", "--user",
                 f"{self.s3.access_key}:{self.s3.secret_key}", "-o", "/dev/null", "-w",
                 "%{size_download}\n", url]]

    def check_made(self, run: RunDir, outputs: list[tuple[Path, Path]]) -> str:
        assert self.workload is not None
        got = outputs[0][0].read_text().strip()
        if got != str(self.workload.total_bytes):
            raise BenchError(f"curl read {got} bytes, expected {self.workload.total_bytes}")
        return "— (read only)"
