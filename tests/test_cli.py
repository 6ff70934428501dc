"""The CLI contract, end to end: ``python -m fileferry`` against real moto S3 and OpenSSH sshd."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.conftest import MakeConfig, sftp_destination
from tests.helpers import (
    entries_under,
    files_under,
    json_line,
    md5_bytes,
    run_cli,
    seed,
    sha256_bytes,
)
from tests.servers.sshd import SshdServer

PREFIX = "out/"
OBJECTS: dict[str, bytes] = {
    f"{PREFIX}a.csv": b"id,name\n1,alpha\n2,beta\n",
    f"{PREFIX}sub/b.bin": os.urandom(300_000),
    f"{PREFIX}Übersicht März.txt": "Umsatz im März: gut.\n".encode(),
    f"{PREFIX}_SUCCESS": b"",
}
RESULT_KEYS = {"transfer_id", "execution_id", "status", "files", "error", "tickets",
               "tickets_pending"}
FILE_KEYS = {"source", "destination", "size", "sha256", "md5", "verified_by"}


@pytest.fixture
def seeded(s3: Any, bucket: str) -> str:
    """``bucket`` holding OBJECTS, plus one object outside PREFIX that must never move."""
    seed(s3, bucket, {**OBJECTS, "elsewhere/not-sent.txt": b"no"})
    return bucket


@pytest.fixture
def config(make_config: MakeConfig, sshd: SshdServer, remote_dir: Path) -> Path:
    """Destination ``acme``: the shell port, rooted at ``remote_dir``, host key pinned."""
    return make_config({"acme": sftp_destination(sshd, remote_dir)})


def relative(key: str) -> str:
    return key[len(PREFIX):]


def assert_refused(proc: Any, error_type: str) -> dict[str, Any]:
    """Exit 2 and one JSON line: status REFUSED, no files, the given error type."""
    assert proc.returncode == 2, proc.stderr
    result = json_line(proc.stdout)
    assert set(result) == RESULT_KEYS
    assert result["status"] == "REFUSED"
    assert result["files"] == []
    assert result["error"]["type"] == error_type, result["error"]
    assert result["error"]["message"]
    assert result["transfer_id"].startswith("tr-")
    return result


def assert_succeeded(proc: Any) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json_line(proc.stdout)
    assert result["status"] == "SUCCEEDED", result
    assert result["error"] is None
    return result


# -- transfer --json ------------------------------------------------------------------------


def test_transfer_json_delivers_and_verifies(seeded: str, config: Path, remote_dir: Path,
                                             tmp_path: Path) -> None:
    proc = run_cli("transfer", "--config", config, "--json", f"s3://{seeded}/{PREFIX}", "acme:",
                   cwd=tmp_path)
    result = assert_succeeded(proc)
    assert set(result) == RESULT_KEYS
    assert result["transfer_id"].startswith("tr-")

    files = {f["source"]: f for f in result["files"]}
    assert set(files) == {f"s3://{seeded}/{key}" for key in OBJECTS}
    for key, body in OBJECTS.items():
        entry = files[f"s3://{seeded}/{key}"]
        assert set(entry) >= FILE_KEYS
        assert entry["destination"] == str(remote_dir / relative(key))
        assert entry["size"] == len(body)
        assert entry["sha256"] == sha256_bytes(body)
        assert entry["md5"] == md5_bytes(body)
        assert entry["verified_by"] == "server-md5"
        assert entry["status"] == "DELIVERED"
        assert entry["error"] is None

    on_disk = files_under(remote_dir)
    assert on_disk.keys() == {relative(k) for k in OBJECTS}, "extra or missing files (temp?)"
    for key, body in OBJECTS.items():
        assert sha256_bytes(on_disk[relative(key)]) == sha256_bytes(body)


def test_transfer_again_is_refused_target_exists(seeded: str, config: Path, remote_dir: Path,
                                                 tmp_path: Path) -> None:
    source = f"s3://{seeded}/{PREFIX}a.csv"
    assert_succeeded(run_cli("transfer", "-c", config, "--json", source, "acme:in/",
                             cwd=tmp_path))
    before = files_under(remote_dir)
    assert before == {"in/a.csv": OBJECTS[f"{PREFIX}a.csv"]}
    again = run_cli("transfer", "-c", config, "--json", source, "acme:in/", cwd=tmp_path)
    assert "in/a.csv" in assert_refused(again, "TargetExists")["error"]["message"]
    assert files_under(remote_dir) == before


def test_unknown_destination(seeded: str, config: Path, remote_dir: Path,
                             tmp_path: Path) -> None:
    proc = run_cli("transfer", "--config", config, "--json", f"s3://{seeded}/{PREFIX}",
                   "nope:", cwd=tmp_path)
    result = assert_refused(proc, "UnknownDestination")
    assert "nope" in result["error"]["message"]
    assert entries_under(remote_dir) == []


def test_missing_object(seeded: str, config: Path, remote_dir: Path, tmp_path: Path) -> None:
    proc = run_cli("transfer", "--config", config, "--json", f"s3://{seeded}/missing.csv",
                   "acme:", cwd=tmp_path)
    result = assert_refused(proc, "SourceNotFound")
    assert "missing.csv" in result["error"]["message"]
    assert entries_under(remote_dir) == []


def test_one_missing_among_several_moves_nothing(seeded: str, config: Path, remote_dir: Path,
                                                 tmp_path: Path) -> None:
    proc = run_cli("transfer", "--config", config, "--json", f"s3://{seeded}/{PREFIX}a.csv",
                   f"s3://{seeded}/missing.csv", "acme:", cwd=tmp_path)
    assert_refused(proc, "SourceNotFound")
    assert entries_under(remote_dir) == []


def test_escaping_destination_path(seeded: str, config: Path, remote_dir: Path,
                                   tmp_path: Path) -> None:
    proc = run_cli("transfer", "--config", config, "--json", f"s3://{seeded}/{PREFIX}a.csv",
                   "acme:../../etc", cwd=tmp_path)
    assert_refused(proc, "PathOutsideRoot")
    assert entries_under(remote_dir) == []
    assert not (remote_dir.parent.parent / "etc" / "a.csv").exists()


def test_bad_config_names_the_key(make_config: MakeConfig, sshd: SshdServer, remote_dir: Path,
                                  seeded: str, tmp_path: Path) -> None:
    config = make_config({"acme": sftp_destination(sshd, remote_dir, verfy="auto")})
    proc = run_cli("transfer", "--config", config, "--json", f"s3://{seeded}/{PREFIX}",
                   "acme:", cwd=tmp_path)
    result = assert_refused(proc, "ConfigError")
    assert "destinations.acme.verfy" in result["error"]["message"]


def test_no_config_file(tmp_path: Path) -> None:
    proc = run_cli("transfer", "--json", "s3://bucket/key", "acme:", cwd=tmp_path,
                   unset=("FILEFERRY_CONFIG",))
    result = assert_refused(proc, "ConfigError")
    assert "fileferry.yaml" in result["error"]["message"]


def test_config_from_env_var(seeded: str, config: Path, remote_dir: Path,
                             tmp_path: Path) -> None:
    proc = run_cli("transfer", "--json", f"s3://{seeded}/{PREFIX}a.csv", "acme:", cwd=tmp_path,
                   env={"FILEFERRY_CONFIG": str(config)})
    assert_succeeded(proc)
    assert files_under(remote_dir) == {"a.csv": OBJECTS[f"{PREFIX}a.csv"]}


@pytest.mark.parametrize("args", [["s3://bucket/key"], []], ids=["one-positional", "none"])
def test_too_few_positionals(args: list[str], tmp_path: Path) -> None:
    proc = run_cli("transfer", "--json", *args, cwd=tmp_path)
    assert_refused(proc, "UsageError")


def test_unknown_option_still_one_json_line(tmp_path: Path) -> None:
    proc = run_cli("transfer", "--json", "--nope", "s3://bucket/key", "acme:", cwd=tmp_path)
    result = assert_refused(proc, "UsageError")
    assert "--nope" in result["error"]["message"]


def test_unknown_option_without_json_is_a_usage_message(tmp_path: Path) -> None:
    proc = run_cli("transfer", "--nope", "s3://bucket/key", "acme:", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "--nope" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_bad_source_uri_is_usage_error(config: Path, tmp_path: Path) -> None:
    proc = run_cli("transfer", "-c", config, "--json", "/local/file.csv", "acme:", cwd=tmp_path)
    assert_refused(proc, "UsageError")


# -- --dry-run ------------------------------------------------------------------------------


def test_dry_run_plans_and_moves_nothing(seeded: str, config: Path, remote_dir: Path,
                                         tmp_path: Path) -> None:
    proc = run_cli("transfer", "--config", config, "--dry-run", "--json",
                   f"s3://{seeded}/{PREFIX}", "acme:planned/", cwd=tmp_path)
    result = assert_succeeded(proc)
    files = {f["source"]: f for f in result["files"]}
    assert set(files) == {f"s3://{seeded}/{key}" for key in OBJECTS}
    for key, body in OBJECTS.items():
        entry = files[f"s3://{seeded}/{key}"]
        assert entry["destination"] == str(remote_dir / "planned" / relative(key))
        assert entry["size"] == len(body)
        assert entry["verified_by"] == "server-md5"
        assert entry["status"] == "PLANNED"
        assert entry["sha256"] is None
    assert entries_under(remote_dir) == []


# -- human output -----------------------------------------------------------------------------


def test_human_output_success(seeded: str, config: Path, remote_dir: Path,
                              tmp_path: Path) -> None:
    proc = run_cli("transfer", "--config", config, f"s3://{seeded}/{PREFIX}sub/b.bin",
                   f"s3://{seeded}/{PREFIX}a.csv", "acme:in/", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "delivered 2 file(s)" in proc.stdout
    assert "error" not in proc.stderr.lower()
    assert files_under(remote_dir) == {"in/b.bin": OBJECTS[f"{PREFIX}sub/b.bin"],
                                       "in/a.csv": OBJECTS[f"{PREFIX}a.csv"]}


def test_human_output_errors_go_to_stderr(seeded: str, config: Path, tmp_path: Path) -> None:
    proc = run_cli("transfer", "--config", config, f"s3://{seeded}/{PREFIX}", "nope:",
                   cwd=tmp_path)
    assert proc.returncode == 2
    assert "UnknownDestination" in proc.stderr
    assert "UnknownDestination" not in proc.stdout
    assert "delivered" not in proc.stdout


def test_human_dry_run(seeded: str, config: Path, remote_dir: Path, tmp_path: Path) -> None:
    proc = run_cli("transfer", "--config", config, "--dry-run", f"s3://{seeded}/{PREFIX}",
                   "acme:", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"dry run: {len(OBJECTS)} file(s)" in proc.stdout
    assert entries_under(remote_dir) == []


# -- hostkey ----------------------------------------------------------------------------------


@pytest.fixture
def pins(tmp_path: Path) -> Path:
    """A known_hosts file for the destination that does not exist yet."""
    return tmp_path / "pins" / "known_hosts"


@pytest.fixture
def unpinned_config(make_config: MakeConfig, sshd: SshdServer, remote_dir: Path,
                    pins: Path) -> Path:
    return make_config({"acme": sftp_destination(sshd, remote_dir, known_hosts=str(pins))})


def server_key_b64(sshd: SshdServer) -> str:
    """The base64 of the test sshd's host key (from its own known_hosts file)."""
    return sshd.known_hosts_file.read_text().split()[2]


def other_key_line(port: int) -> str:
    key = asyncssh.generate_private_key("ssh-ed25519")
    return f"[127.0.0.1]:{port} {key.export_public_key('openssh').decode().strip()}\n"


def hostkey(config: Path, cwd: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    proc = run_cli("hostkey", "acme", "--config", config, "--json", *flags, cwd=cwd)
    return proc.returncode, json_line(proc.stdout)


def transfer_one(bucket: str, config: Path, cwd: Path) -> Any:
    return run_cli("transfer", "--config", config, "--json", f"s3://{bucket}/{PREFIX}a.csv",
                   "acme:", cwd=cwd)


@pytest.mark.parametrize("empty_file", [False, True], ids=["missing", "empty"])
def test_hostkey_shows_unpinned_key(unpinned_config: Path, pins: Path, sshd: SshdServer,
                                    tmp_path: Path, empty_file: bool) -> None:
    if empty_file:
        pins.parent.mkdir()
        pins.write_text("")
    code, data = hostkey(unpinned_config, tmp_path)
    assert code == 0
    assert data["ok"] is True
    assert data["fingerprint"] == sshd.host_key_fingerprint
    assert data["state"] == "not pinned"
    assert data["address"] == f"127.0.0.1:{sshd.shell_port}"
    assert "known_hosts" not in data
    assert pins.exists() is empty_file  # showing never writes


def test_hostkey_human_output(unpinned_config: Path, sshd: SshdServer, tmp_path: Path) -> None:
    proc = run_cli("hostkey", "acme", "--config", unpinned_config, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"fingerprint: {sshd.host_key_fingerprint}" in proc.stdout
    assert "state: not pinned" in proc.stdout


def test_hostkey_pin_then_transfer(unpinned_config: Path, pins: Path, sshd: SshdServer,
                                   seeded: str, remote_dir: Path, tmp_path: Path) -> None:
    assert_refused(transfer_one(seeded, unpinned_config, tmp_path), "HostKeyUnknown")
    assert entries_under(remote_dir) == []

    code, data = hostkey(unpinned_config, tmp_path, "--pin")
    assert code == 0, data
    assert data["state"] == "pinned"
    assert data["known_hosts"] == str(pins)
    assert server_key_b64(sshd) in pins.read_text()
    assert f"[127.0.0.1]:{sshd.shell_port} " in pins.read_text()

    assert_succeeded(transfer_one(seeded, unpinned_config, tmp_path))
    assert files_under(remote_dir) == {"a.csv": OBJECTS[f"{PREFIX}a.csv"]}

    code, data = hostkey(unpinned_config, tmp_path)
    assert (code, data["state"]) == (0, "pinned")


def test_hostkey_different_key_needs_replace(unpinned_config: Path, pins: Path,
                                             sshd: SshdServer, seeded: str, tmp_path: Path
                                             ) -> None:
    pins.parent.mkdir()
    stale = other_key_line(sshd.shell_port)
    pins.write_text(stale)

    code, data = hostkey(unpinned_config, tmp_path)
    assert (code, data["state"]) == (0, "different key pinned")
    assert_refused(transfer_one(seeded, unpinned_config, tmp_path), "HostKeyMismatch")

    code, data = hostkey(unpinned_config, tmp_path, "--pin")
    assert code == 2
    assert data["ok"] is False
    assert data["error"]["type"] == "HostKeyMismatch"
    assert "--replace" in data["error"]["message"]
    assert pins.read_text() == stale

    code, data = hostkey(unpinned_config, tmp_path, "--pin", "--replace")
    assert code == 0, data
    assert data["state"] == "pinned"
    text = pins.read_text()
    assert server_key_b64(sshd) in text
    assert stale.split()[2] not in text
    assert_succeeded(transfer_one(seeded, unpinned_config, tmp_path))


def test_pinned_fingerprint_in_config(make_config: MakeConfig, sshd: SshdServer,
                                      remote_dir: Path, pins: Path, seeded: str,
                                      tmp_path: Path) -> None:
    good = make_config({"acme": sftp_destination(
        sshd, remote_dir, known_hosts=str(pins), host_key_fingerprint=sshd.host_key_fingerprint)})
    assert_succeeded(transfer_one(seeded, good, tmp_path))
    wrong = make_config({"acme": sftp_destination(
        sshd, remote_dir, known_hosts=str(pins),
        host_key_fingerprint="SHA256:" + "A" * 43)})
    (remote_dir / "a.csv").unlink()
    assert_refused(transfer_one(seeded, wrong, tmp_path), "HostKeyMismatch")
    assert entries_under(remote_dir) == []


# -- check ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sftp_only", [False, True], ids=["shell", "sftp-only"])
def test_check(make_config: MakeConfig, sshd: SshdServer, remote_dir: Path, tmp_path: Path,
               sftp_only: bool) -> None:
    config = make_config({"acme": sftp_destination(sshd, remote_dir, sftp_only=sftp_only)})
    proc = run_cli("check", "acme", "--config", config, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json_line(proc.stdout)
    assert data["ok"] is True
    assert data["destination"] == "acme"
    assert data["root"] == str(remote_dir)
    assert data["writable"] is True
    methods = data["verification_methods"]
    assert "readback-sha256" in methods
    if sftp_only:
        assert "server-md5" not in methods
        assert "server-sha256" not in methods
    else:
        assert {"server-md5", "server-sha256"} <= set(methods)
    assert entries_under(remote_dir) == [], "check left something in the root"


def test_check_unknown_destination(config: Path, tmp_path: Path) -> None:
    proc = run_cli("check", "nope", "--config", config, "--json", cwd=tmp_path)
    assert proc.returncode == 2
    data = json_line(proc.stdout)
    assert data["ok"] is False
    assert data["error"]["type"] == "UnknownDestination"


def test_sftp_only_transfer_verifies_by_readback(make_config: MakeConfig, sshd: SshdServer,
                                                 remote_dir: Path, seeded: str,
                                                 tmp_path: Path) -> None:
    config = make_config({"acme": sftp_destination(sshd, remote_dir, sftp_only=True)})
    result = assert_succeeded(transfer_one(seeded, config, tmp_path))
    assert [f["verified_by"] for f in result["files"]] == ["readback-sha256"]
    assert files_under(remote_dir) == {"a.csv": OBJECTS[f"{PREFIX}a.csv"]}


# -- demo -------------------------------------------------------------------------------------


def test_demo(tmp_path: Path) -> None:
    proc = run_cli("demo", "--dir", tmp_path / "demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("delivered 4 file(s)") == 2  # to SFTP, then to FTPS
    assert proc.stdout.count("ServiceNow tickets: user INC") == 2  # the emulator's numbers
    assert proc.stdout.count("temporary files left behind: 0") == 2
    assert proc.stdout.count("  ok /") == 8 and "unexpected" not in proc.stdout
    assert "TargetExists" in proc.stdout  # the repeated transfer is refused, as the demo says
    for server in ("sftp/inbound/daily", "ftps/incoming"):
        assert (tmp_path / "demo" / server / "daily-sales.csv").stat().st_size > 0


def test_demo_refuses_foreign_directory(tmp_path: Path) -> None:
    foreign = tmp_path / "demo"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    proc = run_cli("demo", "--dir", foreign, cwd=tmp_path)
    assert proc.returncode == 2
    assert "not made by the demo" in proc.stderr
    assert (foreign / "precious.txt").read_text() == "keep me"
    assert entries_under(foreign) == ["precious.txt"]
