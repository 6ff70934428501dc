"""OpenPGP test keys: generated once per session (ed25519/cv25519, no passphrase) in
temporary GnuPG homes, removed afterwards with their agents."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class GpgIdentity:
    home: Path
    fingerprint: str
    public: str
    secret: str

    def gpg(self, *args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--no-tty",
                               "--pinentry-mode", "loopback", "--passphrase", "", *args],
                              input=data, capture_output=True, check=False, timeout=60)


def _identity(name: str) -> GpgIdentity:
    home = Path(tempfile.mkdtemp(prefix="ffk-"))
    me = GpgIdentity(home, "", "", "")
    made = me.gpg("--quick-gen-key", f"{name} <{name.lower()}@example.test>",
                  "future-default", "default", "0")
    assert made.returncode == 0, made.stderr.decode()
    listing = me.gpg("--with-colons", "--list-keys").stdout.decode()
    fingerprint = next(line.split(":")[9] for line in listing.splitlines()
                       if line.startswith("fpr:"))
    public = me.gpg("--armor", "--export", fingerprint).stdout.decode()
    secret = me.gpg("--armor", "--export-secret-keys", fingerprint).stdout.decode()
    return GpgIdentity(home, fingerprint, public, secret)


def _forget(identity: GpgIdentity) -> None:
    subprocess.run(["gpgconf", "--homedir", str(identity.home), "--kill", "all"],
                   capture_output=True, check=False)
    shutil.rmtree(identity.home, ignore_errors=True)


@pytest.fixture(scope="session")
def gpg_keys() -> Iterator[tuple[GpgIdentity, GpgIdentity]]:
    """(the partner, us): the partner decrypts, we sign."""
    if shutil.which("gpg") is None:
        pytest.skip("GnuPG is not installed (apt-get install gnupg)")
    partner, ours = _identity("Partner"), _identity("Ferry")
    yield partner, ours
    _forget(partner)
    _forget(ours)
