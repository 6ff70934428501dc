"""Route runs end to end: moto's S3 over HTTP -> the workflow -> OpenSSH's sshd."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fileferry.automation.routes import run_route
from fileferry.config import Settings
from fileferry.store import open_store
from fileferry.store.ledger import Ledger, LedgerEntry
from tests.conftest import sftp_destination
from tests.helpers import seed, sha256_bytes
from tests.servers.sshd import SshdServer
from tests.transfer.test_engine_sftp import tree

SettingsFor = Callable[..., Settings]


async def no_sleep(seconds: float) -> None:
    return None


def route_config(bucket: str, **options: Any) -> dict[str, Any]:
    source = options.pop("source", {})
    return {"source": {"bucket": bucket, "prefix": "out/", **source},
            "destination": options.pop("destination", "t:inbound/"), "options": options}


async def ledger_of(settings: Settings, route: str) -> list[LedgerEntry]:
    store = open_store(settings.store.url)
    try:
        return await Ledger(store).entries(route)
    finally:
        await store.close()


async def test_a_route_sends_what_is_new_once_and_a_changed_object_again(
        settings_for: SettingsFor, sshd: SshdServer, remote_dir: Path, s3: Any,
        bucket: str) -> None:
    seed(s3, bucket, {"out/a.csv": b"a1\n", "out/sub/b.csv": b"b1\n", "elsewhere/c.csv": b"c"})
    settings = settings_for({"t": sftp_destination(sshd, remote_dir)},
                            routes={"r": route_config(bucket)})
    first = await run_route(settings, "r", sleep=no_sleep)
    assert first.status == "SUCCEEDED", first.error
    assert tree(remote_dir) == {"inbound/a.csv": b"a1\n", "inbound/sub/b.csv": b"b1\n"}

    again = await run_route(settings, "r", sleep=no_sleep)
    assert again.status == "NOTHING_NEW" and again.transfer_id is None
    assert again.skipped["already_sent"] == 2

    seed(s3, bucket, {"out/a.csv": b"a2, changed\n", "out/new.csv": b"n\n"})
    (remote_dir / "inbound" / "a.csv").unlink()  # the partner picked it up
    third = await run_route(settings, "r", sleep=no_sleep)
    assert third.status == "SUCCEEDED", third.error
    assert sorted(f.source.rsplit("/", 1)[1] for f in third.files) == ["a.csv", "new.csv"]
    assert (remote_dir / "inbound" / "a.csv").read_bytes() == b"a2, changed\n"
    entries = await ledger_of(settings, "r")
    assert [(e.key, e.state) for e in entries if e.key == "out/a.csv"] == [
        ("out/a.csv", "delivered"), ("out/a.csv", "delivered")]
    by_sha = {e.sha256 for e in entries}
    assert sha256_bytes(b"a2, changed\n") in by_sha and sha256_bytes(b"b1\n") in by_sha
    assert all(e.destination and e.destination.startswith(str(remote_dir)) for e in entries)
