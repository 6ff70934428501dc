"""Test helper: run a real OpenSSH ``sshd`` on 127.0.0.1 for the fileferry test suite.

``start_sshd(workdir)`` generates host/client keys and an ``sshd_config`` inside
``workdir``, starts ``/usr/sbin/sshd -D -e`` listening on two free loopback ports
and waits until both answer with an SSH banner:

* ``shell_port``: normal account (shell, exec, ``sftp`` subsystem);
* ``sftp_only_port``: same account, but ``ForceCommand internal-sftp`` (no shell).

As root, a fresh local user ``fft-<random>`` is created for the server, with a
random password and ``workdir/home`` as login directory; ``stop()`` deletes it.
Otherwise the current user logs in with the generated key only (``password`` is ``None``).
"""

from __future__ import annotations

import os
import pwd
import secrets
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.servers.common import free_port, make_traversable, run

SSHD = "/usr/sbin/sshd"  # sshd re-exec requires an absolute path
TEST_USER_PREFIX = "fft-"
START_TIMEOUT = 10.0
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class SshdServer:
    """Connection details of a running test sshd."""

    host: str
    shell_port: int
    sftp_only_port: int
    username: str
    password: str | None
    client_key_file: Path
    known_hosts_file: Path
    host_key_fingerprint: str
    root: Path
    home: Path




def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))




def _has_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            return sock.recv(256).startswith(b"SSH-")
    except OSError:
        return False




def _setup_root_user(workdir: Path, home: Path, root: Path) -> tuple[str, str]:
    """Create a fresh local user for this server alone; return (name, random password).

    One user per server keeps concurrent test runs (and their password and
    home) out of each other's way; ``stop()`` deletes it again.
    """
    username = f"{TEST_USER_PREFIX}{secrets.token_hex(4)}"
    run("useradd", "-M", "-s", "/bin/bash", "-d", str(home), username)
    pw = pwd.getpwnam(username)
    password = secrets.token_urlsafe(18)
    run("chpasswd", input=f"{username}:{password}\n")
    make_traversable(workdir)
    for d in (home, root):
        os.chown(d, pw.pw_uid, pw.pw_gid)
        d.chmod(0o755)
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    return username, password


def _config(workdir: Path, ports: tuple[int, int], username: str, password_auth: bool) -> str:
    shell_port, sftp_port = ports
    return f"""\
Port {shell_port}
Port {sftp_port}
AddressFamily inet
ListenAddress 127.0.0.1
HostKey {workdir / "ssh_host_ed25519_key"}
PidFile {workdir / "sshd.pid"}
AuthorizedKeysFile {workdir / "authorized_keys"}
AllowUsers {username}
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication {"yes" if password_auth else "no"}
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PermitRootLogin no
X11Forwarding no
PrintMotd no
PrintLastLog no
UseDNS no
LogLevel VERBOSE
MaxStartups 100:30:200
MaxSessions 50
MaxAuthTries 10
Subsystem sftp internal-sftp
Match LocalPort {sftp_port}
    ForceCommand internal-sftp
    AllowTcpForwarding no
"""


def start_sshd(workdir: Path) -> tuple[SshdServer, Callable[[], None]]:
    """Start sshd in the background; return the server description and a stop() function."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    host_key, client_key = workdir / "ssh_host_ed25519_key", workdir / "client_ed25519_key"
    _keygen(host_key, "fileferry-test-host")
    _keygen(client_key, "fileferry-test-client")
    authorized_keys = workdir / "authorized_keys"
    authorized_keys.write_text(client_key.with_suffix(".pub").read_text())
    authorized_keys.chmod(0o644)
    fingerprint = subprocess.check_output(
        ["ssh-keygen", "-lf", str(host_key.with_suffix(".pub"))], text=True
    ).split()[1]
    root = workdir / "sftp-root"
    root.mkdir(exist_ok=True)

    password: str | None = None
    if os.geteuid() == 0:
        home = workdir / "home"
        home.mkdir(exist_ok=True)
        username, password = _setup_root_user(workdir, home, root)
    else:
        pw = pwd.getpwuid(os.geteuid())
        username, home = pw.pw_name, Path(pw.pw_dir)

    config, log_path = workdir / "sshd_config", workdir / "sshd.log"
    errors = ""
    for _ in range(MAX_ATTEMPTS):
        ports = (free_port(), free_port())
        if ports[0] == ports[1]:
            continue
        config.write_text(_config(workdir, ports, username, password is not None))
        run(SSHD, "-t", "-f", str(config))
        with log_path.open("wb") as log:
            cmd = [SSHD, "-D", "-e", "-f", str(config)]
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

        def stop(proc: subprocess.Popen[bytes] = proc) -> None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if password is not None:
                subprocess.run(["userdel", "-f", username], capture_output=True, check=False)

        deadline = time.monotonic() + START_TIMEOUT
        bind_failed = up = False
        while time.monotonic() < deadline:
            errors = log_path.read_text(errors="replace")
            bind_failed = "Address already in use" in errors or "Cannot bind any address" in errors
            if bind_failed or proc.poll() is not None:
                break
            if all(_has_banner(port) for port in ports):
                up = True
                break
            time.sleep(0.05)
        if up:
            break
        code = proc.poll()
        stop()
        if not bind_failed:
            state = "still not answering" if code is None else f"exited with {code}"
            raise RuntimeError(f"sshd failed to start in {START_TIMEOUT:.0f}s ({state}):\n{errors}")
    else:
        raise RuntimeError(f"sshd: no free port pair after {MAX_ATTEMPTS} attempts:\n{errors}")

    known_hosts = workdir / "known_hosts"
    keytype, key_b64 = host_key.with_suffix(".pub").read_text().split()[:2]
    known_hosts.write_text("".join(f"[127.0.0.1]:{port} {keytype} {key_b64}\n" for port in ports))
    server = SshdServer(
        host="127.0.0.1",
        shell_port=ports[0],
        sftp_only_port=ports[1],
        username=username,
        password=password,
        client_key_file=client_key,
        known_hosts_file=known_hosts,
        host_key_fingerprint=fingerprint,
        root=root,
        home=home,
    )
    return server, stop
