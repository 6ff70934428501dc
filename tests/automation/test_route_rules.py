"""Selection, naming, trigger files and post-delivery actions against moto's S3 and sshd."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fileferry.automation.routes import run_route
from fileferry.config import Settings
from fileferry.models import FilePlan, FileResult
from fileferry.store import open_store
from fileferry.store.ledger import Ledger, LedgerEntry
from tests.automation.test_routes import ledger_of, no_sleep, route_config
from tests.conftest import sftp_destination
from tests.helpers import json_line, run_cli, seed, sha256_bytes
from tests.servers.sshd import SshdServer
from tests.transfer.test_engine_sftp import tree

SettingsFor = Callable[..., Settings]


def keys(s3: Any, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


async def test_include_exclude_min_age_and_naming(settings_for: SettingsFor, sshd: SshdServer,
                                                  remote_dir: Path, s3: Any,
                                                  bucket: str) -> None:
    seed(s3, bucket, {"out/a.csv": b"a", "out/deep/b.csv": b"b", "out/c.txt": b"c",
                      "out/tmp_d.csv": b"d"})
    route = route_config(bucket, naming="{stem}_{date:%Y%m%d}_{seq:03d}{ext}",
                         source={"include": ["*.csv"], "exclude": ["tmp_*"], "min_age": "10m"})
    route["triggers"] = {"schedule": {"cron": "0 2 * * *", "timezone": "Asia/Tokyo"}}
    settings = settings_for({"t": sftp_destination(sshd, remote_dir, on_conflict="rename")},
                            routes={"r": route})
    early = await run_route(settings, "r", sleep=no_sleep)
    assert early.status == "NOTHING_NEW"
    assert early.skipped["too_new"] == 2 and early.skipped["excluded"] == 2
    assert early.ready_at is not None and early.ready_at > time.time() + 500
    later = time.time() + 3600
    run = await run_route(settings, "r", sleep=no_sleep, clock=lambda: later)
    assert run.status == "SUCCEEDED", run.error
    day = time.strftime("%Y%m%d", time.gmtime(later + 9 * 3600))  # Tokyo: UTC+9
    assert tree(remote_dir / "inbound") == {f"a_{day}_001.csv": b"a", f"b_{day}_002.csv": b"b"}
    seed(s3, bucket, {"out/x/a.csv": b"another a"})  # same {stem}: the counter keeps names apart
    again = await run_route(settings, "r", sleep=no_sleep, clock=lambda: later + 60)
    assert again.status == "SUCCEEDED", again.error
    assert (remote_dir / "inbound" / f"a_{day}_003.csv").read_bytes() == b"another a"


async def test_resend_changed_false_sends_a_key_once(settings_for: SettingsFor,
                                                     sshd: SshdServer, remote_dir: Path,
                                                     s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"out/k.csv": b"v1"})
    settings = settings_for({"t": sftp_destination(sshd, remote_dir, on_conflict="overwrite")},
                            routes={"r": route_config(bucket, resend_changed=False)})
    assert (await run_route(settings, "r", sleep=no_sleep)).status == "SUCCEEDED"
    seed(s3, bucket, {"out/k.csv": b"v2"})
    run = await run_route(settings, "r", sleep=no_sleep)
    assert run.status == "NOTHING_NEW" and run.skipped["already_sent"] == 1
    assert (remote_dir / "inbound" / "k.csv").read_bytes() == b"v1"


async def test_overlapping_run_is_busy_and_a_dead_claim_is_released(
        settings_for: SettingsFor, sshd: SshdServer, remote_dir: Path, s3: Any,
        bucket: str) -> None:
    seed(s3, bucket, {"out/k.csv": b"data"})
    etag = s3.head_object(Bucket=bucket, Key="out/k.csv")["ETag"].strip('"')
    settings = settings_for({"t": sftp_destination(sshd, remote_dir)},
                            routes={"r": route_config(bucket)})
    store = open_store(settings.store.url)
    try:  # a run that crashed after claiming, before its transfer existed
        assert await Ledger(store).claim(LedgerEntry(
            route="r", bucket=bucket, key="out/k.csv", etag=etag, size=4, state="claimed",
            transfer_id="tr-crashed", claimed_at=time.time()))
        assert await store.acquire_lease("route:r", "other-host:1:x", time.time(), 30)
        busy = await run_route(settings, "r", sleep=no_sleep)
        assert busy.status == "BUSY" and tree(remote_dir) == {}
        await store.release_lease("route:r", "other-host:1:x")
    finally:
        await store.close()
    run = await run_route(settings, "r", sleep=no_sleep)
    assert run.status == "SUCCEEDED", run.error
    assert run.recovered == ["tr-crashed"]
    assert tree(remote_dir) == {"inbound/k.csv": b"data"}
    states = [(e.transfer_id, e.state) for e in await ledger_of(settings, "r")]
    assert states == [(run.transfer_id, "delivered")]


async def test_trigger_file_and_actions_only_after_the_whole_batch(
        settings_for: SettingsFor, sshd: SshdServer, remote_dir: Path, s3: Any,
        bucket: str) -> None:
    seed(s3, bucket, {"out/a.csv": b"aaa", "out/b.csv": b"bbbb"})
    blocker = remote_dir / "inbound" / "b.csv"  # a directory: b cannot be renamed into place
    blocker.mkdir(parents=True)
    for path in (blocker.parent, blocker):
        shutil.chown(path, sshd.username)
    route = route_config(bucket, trigger_file={"name": "{date:%Y%m%d}.done"},
                         post_delivery={"archive_prefix": "archive/", "delete": True,
                                        "tags": {"fileferry": "sent"}})
    settings = settings_for({"t": sftp_destination(sshd, remote_dir, on_conflict="overwrite")},
                            routes={"r": route})
    failed = await run_route(settings, "r", sleep=no_sleep)
    assert failed.status == "FAILED" and failed.trigger_file is None
    assert not list((remote_dir / "inbound").glob("*.done")), "it promises the whole batch"
    # a was verified and renamed into place before b failed: it is delivered, so it is in
    # the ledger (never sent again) and gets its actions; b is untouched, to go again
    assert (remote_dir / "inbound" / "a.csv").read_bytes() == b"aaa"
    assert keys(s3, bucket) == {"archive/a.csv", "out/b.csv"}
    tags = s3.get_object_tagging(Bucket=bucket, Key="archive/a.csv")["TagSet"]
    assert tags == [{"Key": "fileferry", "Value": "sent"}]
    assert failed.actions_failed == []
    entries = {e.key: e for e in await ledger_of(settings, "r")}
    assert entries["out/a.csv"].state == "delivered"
    assert entries["out/a.csv"].actions == {"tag": "done", "archive": "done", "delete": "done"}
    assert entries["out/b.csv"].state == "released" and not entries["out/b.csv"].actions

    blocker.rmdir()
    run = await run_route(settings, "r", sleep=no_sleep)
    assert run.status == "SUCCEEDED", run.error
    assert [f.source.rsplit("/", 1)[1] for f in run.files] == ["b.csv"], "a is not sent twice"
    done = list((remote_dir / "inbound").glob("*.done"))
    assert len(done) == 1 and done[0].read_bytes() == b""
    assert run.trigger_file == str(done[0])
    assert run.actions_failed == []
    assert keys(s3, bucket) == {"archive/a.csv", "archive/b.csv"}
    tags = s3.get_object_tagging(Bucket=bucket, Key="archive/b.csv")["TagSet"]
    assert tags == [{"Key": "fileferry", "Value": "sent"}]
    entry = {e.key: e for e in await ledger_of(settings, "r")}["out/b.csv"]
    assert entry.actions == {"tag": "done", "archive": "done", "delete": "done"}


class VanishAfterRename:
    """The partner's job takes each file the moment it lands: VerifyDelivery fails."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def file_started(self, plan: FilePlan) -> None: ...

    def bytes_moved(self, plan: FilePlan, count: int) -> None: ...

    def file_retrying(self, plan: FilePlan, attempt: int, error: str) -> None: ...

    def file_resumed(self, plan: FilePlan, offset: int) -> None: ...

    def file_finished(self, result: FileResult) -> None:
        if result.status == "DELIVERED":
            Path(result.destination).unlink()


async def test_no_archive_or_delete_when_verification_fails(
        settings_for: SettingsFor, sshd: SshdServer, remote_dir: Path, s3: Any,
        bucket: str) -> None:
    seed(s3, bucket, {"out/a.csv": b"aaa"})
    route = route_config(bucket, trigger_file={"name": "batch.ok"},
                         post_delivery={"archive_prefix": f"s3://{bucket}/archive/",
                                        "delete": True})
    settings = settings_for({"t": sftp_destination(sshd, remote_dir)}, routes={"r": route})
    run = await run_route(settings, "r", sleep=no_sleep,
                          subscribers=[VanishAfterRename(remote_dir)])
    assert run.status == "FAILED" and run.error and run.error["type"] == "VerificationFailed"
    assert keys(s3, bucket) == {"out/a.csv"}
    assert not (remote_dir / "inbound" / "batch.ok").exists()
    [entry] = await ledger_of(settings, "r")  # renamed into place, then gone: source kept
    assert set(entry.actions) == {"archive", "delete"}
    assert all(v.startswith("skipped: the batch failed") for v in entry.actions.values())


def test_cli_run_routes_and_ledger(make_config: Callable[..., Path], sshd: SshdServer,
                                   remote_dir: Path, s3: Any, bucket: str,
                                   tmp_path: Path) -> None:
    seed(s3, bucket, {"out/r.csv": b"1,2,3\n"})
    route = route_config(bucket, trigger_file={"name": "manifest.json", "content": "json"})
    route["triggers"] = {"schedule": {"cron": "30 1 * * *"}}
    config = make_config({"t": sftp_destination(sshd, remote_dir)}, routes={"r": route})
    done = run_cli("run", "r", "--config", config, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json_line(done.stdout)
    assert result["status"] == "SUCCEEDED" and len(result["files"]) == 1
    manifest = json.loads((remote_dir / "inbound" / "manifest.json").read_text())
    assert manifest["files"] == [{"name": "r.csv", "size": 6, "sha256": sha256_bytes(b"1,2,3\n")}]
    listed = run_cli("routes", "--config", config, "--json", cwd=tmp_path)
    [row] = json_line(listed.stdout)["routes"]
    assert row["last_run"]["transfer_id"] == result["transfer_id"]
    assert row["next_run"].endswith("T01:30:00+00:00")
    exported = run_cli("ledger", "r", "--config", config, "--format", "csv", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    header, line = exported.stdout.splitlines()
    assert header.startswith("key,etag,version_id,size,sha256")
    assert line.startswith("out/r.csv,") and sha256_bytes(b"1,2,3\n") in line
    unknown = run_cli("run", "nope", "--config", config, "--json", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown route 'nope'" in unknown.stdout
