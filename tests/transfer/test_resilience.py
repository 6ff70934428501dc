"""Bad networks: cuts mid-transfer resume from the confirmed offset; pools reuse connections.

A fault-injecting proxy on loopback sits between the engine and the real server.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fileferry.config import Settings
from tests.conftest import ftp_target, sftp_destination
from tests.servers.proftpd import ProftpdServer
from tests.servers.proxy import FaultProxy
from tests.servers.sshd import SshdServer
from tests.transfer.test_engine_sftp import Recorder, seed, send, tree

SettingsFor = Callable[..., Settings]
MiB = 1024 * 1024
FAST_RETRY = {"retry_backoff": 0, "retry_max_backoff": 0}
SMALL_CHUNKS = {"default_chunk_size": MiB}


@pytest.fixture
def ssh_proxy(sshd: SshdServer) -> Iterator[FaultProxy]:
    with FaultProxy(sshd.shell_port) as proxy:
        yield proxy


@pytest.fixture
def ftp_proxy(proftpd: ProftpdServer) -> Iterator[FaultProxy]:
    assert proftpd.plain_port is not None
    with FaultProxy(proftpd.plain_port, ftp=True) as proxy:
        yield proxy


def through(sshd: SshdServer, proxy: FaultProxy, root: Path, tmp_path: Path,
            **extra: Any) -> dict[str, Any]:
    """An SFTP destination reached through the proxy, with the server's key pinned for it."""
    key = sshd.known_hosts_file.read_text().splitlines()[0].split(" ", 1)[1]
    known = tmp_path / "proxy_known_hosts"
    known.write_text(f"[127.0.0.1]:{proxy.port} {key}\n")
    dest = sftp_destination(sshd, root, known_hosts=str(known), **FAST_RETRY, **extra)
    dest["url"] = f"sftp://{sshd.username}@127.0.0.1:{proxy.port}{root}/"
    return dest


@pytest.mark.parametrize("cuts", [1, 3])
async def test_sftp_resumes_after_cuts(settings_for: SettingsFor, sshd: SshdServer,
                                       ssh_proxy: FaultProxy, remote_dir: Path, tmp_path: Path,
                                       s3: Any, bucket: str, cuts: int) -> None:
    body = secrets.token_bytes(8 * MiB)
    seed(s3, bucket, {"big.bin": body})
    settings = settings_for({"t": through(sshd, ssh_proxy, remote_dir, tmp_path,
                                          retry_attempts=cuts + 2)},
                            transfer=SMALL_CHUNKS)
    ssh_proxy.cut_after(int(2.5 * MiB), times=cuts)
    recorder = Recorder()
    result = await send(settings, f"s3://{bucket}/big.bin", subscribers=[recorder])
    assert result.status == "SUCCEEDED", result.error
    assert tree(remote_dir) == {"big.bin": body}
    assert result.files[0].sha256 == hashlib.sha256(body).hexdigest()
    assert ssh_proxy.cuts == cuts and recorder.retries == cuts
    assert all(offset > 0 for offset in recorder.resumed_at), "resumed, not restarted"
    assert ssh_proxy.bytes_up < 1.5 * len(body)


class SettledBeforeRetry(Recorder):
    """Holds the retry until ProFTPD has stored what it received before the cut (the
    reconnect comes later than that on a real network; on a loaded test machine the
    server process may lag behind by megabytes)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def file_retrying(self, plan: Any, attempt: int, error: str) -> None:
        super().file_retrying(plan, attempt, error)
        sizes, deadline = None, time.monotonic() + 30
        while time.monotonic() < deadline:
            now = sorted(p.stat().st_size for p in self.root.rglob(".*.fftmp"))
            if now and now == sizes:
                return
            sizes = now
            time.sleep(0.5)


async def test_ftp_resumes_after_a_cut(request: pytest.FixtureRequest,
                                       settings_for: SettingsFor, ftp_proxy: FaultProxy,
                                       s3: Any, bucket: str) -> None:
    body = secrets.token_bytes(8 * MiB)
    seed(s3, bucket, {"big.bin": body})
    dest, local = ftp_target(request, "proftpd-plain", **FAST_RETRY)
    dest["url"] = dest["url"].replace(f":{request.getfixturevalue('proftpd').plain_port}/",
                                      f":{ftp_proxy.port}/")
    settings = settings_for({"t": dest}, transfer=SMALL_CHUNKS)
    ftp_proxy.cut_after(3 * MiB, server_sees_fin=True)  # what was sent reaches the disk
    recorder = SettledBeforeRetry(local)
    result = await send(settings, f"s3://{bucket}/big.bin", subscribers=[recorder])
    assert result.status == "SUCCEEDED", result.error
    assert tree(local) == {"big.bin": body}
    assert result.files[0].sha256 == hashlib.sha256(body).hexdigest()
    assert ftp_proxy.cuts == 1 and recorder.retries == 1
    assert recorder.resumed_at and recorder.resumed_at[0] > 0
    assert ftp_proxy.bytes_up < 1.5 * len(body)


async def test_server_gone_longer_than_the_retries(settings_for: SettingsFor, sshd: SshdServer,
                                                   ssh_proxy: FaultProxy, remote_dir: Path,
                                                   tmp_path: Path, s3: Any,
                                                   bucket: str) -> None:
    seed(s3, bucket, {"big.bin": secrets.token_bytes(4 * MiB)})
    settings = settings_for({"t": through(sshd, ssh_proxy, remote_dir, tmp_path,
                                          retry_attempts=3)}, transfer=SMALL_CHUNKS)

    class Vanish(Recorder):
        def bytes_moved(self, plan: Any, count: int) -> None:
            super().bytes_moved(plan, count)
            if self.moved >= MiB:
                ssh_proxy.block()

    vanish = Vanish()
    result = await send(settings, f"s3://{bucket}/big.bin", subscribers=[vanish])
    assert result.status == "FAILED"
    assert result.error is not None and result.error["type"] == "EndpointUnavailable"
    assert vanish.retries == 2
    assert "big.bin" not in tree(remote_dir), "nothing under the final name"
    # The temporary file could not be removed while the server was gone; it keeps
    # its hidden temporary name.
    assert all(name.endswith(".fftmp") for name in tree(remote_dir))


async def test_unreachable_at_start_is_retried_then_fails(settings_for: SettingsFor,
                                                          sshd: SshdServer,
                                                          ssh_proxy: FaultProxy,
                                                          remote_dir: Path, tmp_path: Path,
                                                          s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"k": b"1"})
    settings = settings_for({"t": through(sshd, ssh_proxy, remote_dir, tmp_path,
                                          retry_attempts=3)})
    ssh_proxy.block()
    result = await send(settings, f"s3://{bucket}/k")
    assert result.status == "FAILED"
    assert result.error is not None and result.error["type"] == "EndpointUnavailable"
    assert ssh_proxy.connections == 3, "three attempts to connect"


async def test_many_small_files_reuse_a_few_connections(settings_for: SettingsFor,
                                                        sshd: SshdServer,
                                                        ssh_proxy: FaultProxy,
                                                        remote_dir: Path, tmp_path: Path,
                                                        s3: Any, bucket: str) -> None:
    objects = {f"tiny/{i:04d}.txt": f"row {i}\n".encode() for i in range(1000)}
    seed(s3, bucket, {**objects, "later/x.txt": b"x"})
    settings = settings_for({"t": through(sshd, ssh_proxy, remote_dir, tmp_path,
                                          max_sessions=2, verify="size")},
                            transfer={"max_parallel_threads": 8})
    first = await send(settings, f"s3://{bucket}/tiny/", dest="t:one")
    second = await send(settings, f"s3://{bucket}/later/", dest="t:two")
    assert first.status == second.status == "SUCCEEDED"
    assert len(tree(remote_dir)) == 1001
    assert ssh_proxy.connections <= 2, "pooled across files and transfers"
