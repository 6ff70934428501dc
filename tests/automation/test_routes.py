"""Route runs end to end: moto's S3 over HTTP -> the workflow -> OpenSSH's sshd."""

from __future__ import annotations

import csv
import io
import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from fileferry.automation.routes import run_route
from fileferry.config import Settings
from fileferry.sandbox.s3 import MotoServer
from fileferry.store import open_store
from fileferry.store.ledger import Ledger, LedgerEntry
from tests.automation.conftest import GpgIdentity
from tests.conftest import sftp_destination
from tests.helpers import seed, sha256_bytes
from tests.identity.test_secret_scan import store_bytes
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


async def test_pgp_round_trip_with_signature_manifest_and_ledger(
        settings_for: SettingsFor, sshd: SshdServer, remote_dir: Path, s3: Any, bucket: str,
        gpg_keys: tuple[GpgIdentity, GpgIdentity], tmp_path: Path) -> None:
    partner, ours = gpg_keys
    signing_key = tmp_path / "ours.asc"
    signing_key.write_text(ours.secret, encoding="utf-8")
    body = secrets.token_bytes(3 * 1024 * 1024 + 17)
    seed(s3, bucket, {"out/data.bin": body, "out/notes.txt": b"hello partner\n"})
    route = route_config(bucket, encryption={"recipient_key": partner.public,
                                             "signing_key_file": str(signing_key)},
                         trigger_file={"name": "{route}_{date:%Y%m%d}.manifest.csv",
                                       "content": "csv"})
    settings = settings_for({"t": sftp_destination(sshd, remote_dir)}, routes={"r": route},
                            transfer={"default_chunk_size": 256 * 1024})
    run = await run_route(settings, "r", sleep=no_sleep)
    assert run.status == "SUCCEEDED", run.error
    arrived = tree(remote_dir / "inbound")
    manifest_name = next(n for n in arrived if n.endswith(".manifest.csv"))
    assert sorted(n for n in arrived if n != manifest_name) == ["data.bin.pgp", "notes.txt.pgp"]
    for name, plain in (("data.bin.pgp", body), ("notes.txt.pgp", b"hello partner\n")):
        partner.gpg("--import", data=ours.public.encode())
        done = partner.gpg("--status-fd", "2", "--decrypt", data=arrived[name])
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout == plain
        assert f"VALIDSIG {ours.fingerprint}".encode() in done.stderr
        assert arrived[name] != plain
    rows = list(csv.DictReader(io.StringIO(arrived[manifest_name].decode())))
    assert {r["name"]: (int(r["size"]), r["sha256"]) for r in rows} == {
        n: (len(arrived[n]), sha256_bytes(arrived[n])) for n in ("data.bin.pgp", "notes.txt.pgp")}
    entries = {e.key: e for e in await ledger_of(settings, "r")}
    data = entries["out/data.bin"]
    assert data.sha256 == sha256_bytes(body) and data.size == len(body)
    assert data.ciphertext_sha256 == sha256_bytes(arrived["data.bin.pgp"])
    assert data.ciphertext_size == len(arrived["data.bin.pgp"])
    assert run.trigger_file and run.trigger_file.endswith(manifest_name)


async def test_pgp_keys_from_secrets_manager_never_reach_logs_or_the_store(
        settings_for: SettingsFor, sshd: SshdServer, remote_dir: Path, s3: Any, bucket: str,
        gpg_keys: tuple[GpgIdentity, GpgIdentity], moto: MotoServer,
        caplog: pytest.LogCaptureFixture) -> None:
    partner, ours = gpg_keys
    sm = boto3.client("secretsmanager", endpoint_url=moto.endpoint_url, region_name="us-east-1")
    public = sm.create_secret(Name="fileferry/destinations/partner-pgp-" + secrets.token_hex(3),
                              SecretString=partner.public)["ARN"]
    signing = "fileferry/destinations/our-pgp-" + secrets.token_hex(3)
    sm.create_secret(Name=signing, SecretString=json.dumps({"private_key": ours.secret}))
    seed(s3, bucket, {"out/ledger.csv": b"id,amount\n1,100\n"})
    route = route_config(bucket, encryption={"recipient_key_secret": public,
                                             "signing_key_secret": f"{signing}#private_key"})
    settings = settings_for({"t": sftp_destination(sshd, remote_dir)}, routes={"r": route},
                            secrets_manager={"endpoint_url": moto.endpoint_url,
                                             "region": "us-east-1"})
    caplog.set_level(logging.DEBUG)
    run = await run_route(settings, "r", sleep=no_sleep)
    assert run.status == "SUCCEEDED", run.error
    arrived = (remote_dir / "inbound" / "ledger.csv.pgp").read_bytes()
    partner.gpg("--import", data=ours.public.encode())
    done = partner.gpg("--status-fd", "2", "--decrypt", data=arrived)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"id,amount\n1,100\n"
    assert f"VALIDSIG {ours.fingerprint}".encode() in done.stderr

    def body(armored: str) -> str:  # a line of the key material itself
        return max(armored.splitlines(), key=len)

    known = {"our private key": body(ours.secret), "the partner's key": body(partner.public)}
    places = {"log records": "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}"
                                       for r in caplog.records),
              "the store (raw SQLite files)": store_bytes(settings.store.url).decode("latin-1")}
    assert len(caplog.records) > 10  # the scan looks at real material
    leaks = [f"{what} in {where}" for where, text in places.items()
             for what, value in known.items() if value in text]
    assert not leaks


async def test_a_missing_pgp_secret_fails_the_file_and_names_the_key(
        settings_for: SettingsFor, sshd: SshdServer, remote_dir: Path, s3: Any, bucket: str,
        moto: MotoServer) -> None:
    seed(s3, bucket, {"out/x.csv": b"x\n"})
    route = route_config(bucket, encryption={"recipient_key_secret": "fileferry/nope"})
    settings = settings_for({"t": sftp_destination(sshd, remote_dir)}, routes={"r": route},
                            secrets_manager={"endpoint_url": moto.endpoint_url,
                                             "region": "us-east-1"})
    run = await run_route(settings, "r", sleep=no_sleep)
    assert run.status in ("FAILED", "REFUSED") and run.error is not None
    assert "routes.r.options.encryption.recipient_key_secret" in run.error["message"]
    assert "no secret fileferry/nope" in run.error["message"]
    assert tree(remote_dir) == {}
