"""``fileferry demo``: a real transfer through stand-ins on 127.0.0.1.

It starts moto's S3 server, an SFTP server with a generated host key and an
FTPS server with a certificate from a throw-away CA, seeds a bucket, writes a
configuration that pins the key and trusts the CA, sends a folder of objects to
both, shows where they landed with their checksums, and then shows the refusal
a repeated transfer gets (the files exist and ``on_conflict`` is ``fail``).
It also runs ``fileferry serve`` in the background and prints the dashboard's
URL and token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx

from fileferry import console
from fileferry.config import load_settings
from fileferry.models import TransferResult
from fileferry.sandbox.ftps import SandboxFtpServer
from fileferry.sandbox.s3 import MotoServer
from fileferry.sandbox.servicenow import ServiceNowEmulator
from fileferry.sandbox.sftp import SandboxSftpServer
from fileferry.sandbox.tls import make_test_pki
from fileferry.services import history, submit_transfer
from fileferry.transfer.engine import TransferRequest

__all__ = ["run_demo", "seed_objects"]

BUCKET = "fileferry-demo"
PREFIX = "reports/2026-11/"
CONFIG = """\
# Written by `fileferry demo`: the stand-in servers it points at are gone
# when the demo ends (run `fileferry demo --keep-running` to try commands).
s3:
  endpoint_url: {endpoint}
  region: us-east-1
transfer:
  max_parallel_threads: 5
destinations:
  partner:
    url: sftp://partner@127.0.0.1:{port}/inbound/
    password: ${{FILEFERRY_DEMO_PASSWORD}}
    known_hosts: {known_hosts}
    verify: auto
    on_conflict: fail
  bank:
    url: ftps://bank@127.0.0.1:{ftps_port}/
    password: ${{FILEFERRY_DEMO_PASSWORD}}
    ca_file: {ca_file}
    verify: auto
servicenow:
  instance_url: {snow_url}
  username: admin
  password: ${{FILEFERRY_DEMO_PASSWORD}}
  default_assignment_group: DataOps
store:
  url: sqlite:///{workdir}/fileferry.db
"""


def seed_objects() -> dict[str, bytes]:
    """A small, varied folder: CSV, a binary, a zero-byte file, spaces and non-ASCII."""
    rows = "".join(f"2026-11-{d:02d},store-{s:03d},{(d * 7919 + s * 104729) % 100000 / 100:.2f}\n"
                   for d in range(1, 29) for s in range(1, 400))
    return {
        f"{PREFIX}daily-sales.csv": ("date,store,amount\n" + rows).encode(),
        f"{PREFIX}images/catalogue.bin": secrets.token_bytes(12 * 1024 * 1024),
        f"{PREFIX}Übersicht März.txt": "Umsatz im März: gut.\n".encode(),
        f"{PREFIX}_SUCCESS": b"",
    }


def _prepare(workdir: Path) -> bool:
    """A fresh demo directory; never delete a directory the demo did not make."""
    marker = workdir / ".fileferry-demo"
    if workdir.exists() and any(workdir.iterdir()):
        if not marker.exists():
            console.stderr.print(f"[red]error[/red]: {workdir} exists and was not made by the "
                                 "demo; pass --dir with a new or empty directory")
            return False
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    marker.touch()
    # The stand-in S3 takes any credentials; never send real ones to it.
    os.environ.update(AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo",
                      AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ["FILEFERRY_DEMO_PASSWORD"] = secrets.token_urlsafe(16)
    return True


async def run_demo(workdir: Path, keep_running: bool = False) -> int:
    workdir = workdir.resolve()
    if not _prepare(workdir):
        return 2
    password = os.environ["FILEFERRY_DEMO_PASSWORD"]
    pki = make_test_pki(workdir / "pki")
    with MotoServer(workdir) as s3, \
            SandboxFtpServer(workdir / "ftps", "bank", password, tls=pki) as ftps, \
            ServiceNowEmulator(username="admin", password=password) as snow:
        snow.add_group("DataOps")
        snow.add_user("demo", "Demo Requester")
        sftp = await SandboxSftpServer(workdir / "sftp", "partner", password).start()
        try:
            config, objects = _setup(workdir, s3.endpoint_url, sftp, ftps.port, pki.ca_file,
                                     snow.url)
            with _dashboard(config) as api:
                return await _show(workdir, config, objects, keep_running, api)
        finally:
            await sftp.close()


@contextlib.contextmanager
def _dashboard(config: Path) -> Iterator[tuple[str, str]]:
    """``fileferry serve`` in the background: (its URL, its token), printed both."""
    from fileferry.api.auth import api_token
    from fileferry.api.server import BackgroundServer

    settings = load_settings(config)
    token = api_token(settings)
    server = BackgroundServer(settings).start()
    console.stdout.print(f"dashboard            {server.url}/#token={token.value}\n"
                         f"API token            {token.value}  (also in {token.path})",
                         highlight=False)
    try:
        yield server.url, token.value
    finally:
        server.stop()


def _api_listing(url: str, token: str) -> None:
    """What the dashboard shows, asked of the API as any client would."""
    answer = httpx.get(f"{url}/api/transfers", headers={"Authorization": f"Bearer {token}"},
                       timeout=30)
    answer.raise_for_status()
    page = answer.json()
    states = ", ".join(sorted(t["status"].lower() for t in page["data"]))
    console.stdout.print(f"\nThe API ({url}/api/transfers) lists {page['count']} "
                         f"transfer(s): {states}", highlight=False)


def _setup(workdir: Path, endpoint: str, sftp: SandboxSftpServer, ftps_port: int,
           ca_file: Path, snow_url: str) -> tuple[Path, dict[str, bytes]]:
    out = console.stdout
    out.rule("FileFerry demo")
    out.print(f"S3 stand-in (moto)   {endpoint}")
    out.print(f"SFTP stand-in        127.0.0.1:{sftp.port}  host key {sftp.fingerprint}")
    out.print(f"FTPS stand-in        127.0.0.1:{ftps_port}  certificate from a demo CA")
    out.print(f"ServiceNow stand-in  {snow_url}  (Table API emulator)")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    objects = seed_objects()
    for key, body in objects.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    out.print(f"seeded s3://{BUCKET}/{PREFIX} with {len(objects)} objects")
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(sftp.known_hosts_line(), encoding="utf-8")
    config = workdir / "fileferry.yaml"
    config.write_text(CONFIG.format(endpoint=endpoint, port=sftp.port, ftps_port=ftps_port,
                                    ca_file=ca_file, known_hosts=known_hosts,
                                    workdir=workdir, snow_url=snow_url), encoding="utf-8")
    out.print(f"configuration        {config}")
    return config, objects


async def _show(workdir: Path, config: Path, objects: dict[str, bytes],
                keep_running: bool, api: tuple[str, str]) -> int:
    out = console.stdout
    source = f"s3://{BUCKET}/{PREFIX}"
    for dest, disk in (("partner:daily/", workdir / "sftp"), ("bank:incoming/",
                                                               workdir / "ftps")):
        out.print(f"\n$ fileferry --config {config} transfer {source} {dest}",
                  highlight=False)
        result = await _transfer(config, [source], dest)
        console.print_result(result)
        if result.status != "SUCCEEDED":
            return 1
        _show_landed(disk, objects)
    out.print("\nThe first transfer again is refused before any byte moves:")
    again = await _transfer(config, [source], "partner:daily/")
    console.print_result(again, errors=out)
    _api_listing(*api)
    if keep_running:
        out.print("\nServers stay up; try: FILEFERRY_DEMO_PASSWORD="
                  f"{os.environ['FILEFERRY_DEMO_PASSWORD']} fileferry --config {config} "
                  f"check bank\nThe dashboard stays up at {api[0]}/\nCtrl-C to stop.",
                  highlight=False)
        await asyncio.Event().wait()
    return 0 if again.status == "REFUSED" else 1


async def _transfer(config: Path, sources: list[str], destination: str) -> TransferResult:
    """Through the workflow on the embedded runner, as ``fileferry transfer`` does."""
    settings = load_settings(config)
    request = TransferRequest(sources=sources, destination=destination, requester="demo")
    if console.isatty():
        with console.ProgressBars() as bars:
            result = await submit_transfer(settings, request, [bars])
    else:
        result = await submit_transfer(settings, request)
    events = await history(settings, result.transfer_id)
    states = [e["state"] for e in events if e["event"] == "entered" and "/" not in e["path"]]
    console.stdout.print(f"workflow {result.execution_id}: {' → '.join(states)}",
                         highlight=False)
    if result.tickets:
        console.stdout.print(f"ServiceNow tickets: user {result.tickets.get('user')}, "
                             f"audit {result.tickets.get('audit')}", highlight=False)
    return result


def _show_landed(root: Path, objects: dict[str, bytes]) -> None:
    """Prove it from the server's side: hash what is on the SFTP server's disk."""
    out = console.stdout
    out.print(f"\nOn the server's disk ({root}):")
    landed = sorted(p for p in root.rglob("*") if p.is_file())
    expected = {hashlib.sha256(b).hexdigest() for b in objects.values()}
    for path in landed:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        mark = "[green]ok[/green]" if digest in expected else "[red]unexpected[/red]"
        out.print(f"  {mark} /{path.relative_to(root)}  {path.stat().st_size} bytes  "
                  f"sha256 {digest[:16]}…", highlight=False)
    leftovers = [p for p in landed if p.name.endswith(".fftmp")]
    out.print(f"temporary files left behind: {len(leftovers)}")
