#!/usr/bin/env bash
# Lint, type-check and run the whole test suite against real local servers
# (moto's S3 server, OpenSSH's sshd, ProFTPD, chromium). Extra arguments go to pytest.
source "$(dirname "$0")/bootstrap.sh"
# Real servers for the tests: OpenSSH's sshd and ProFTPD with TLS and mod_digest.
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
[ -x /usr/sbin/proftpd ] || need+=(proftpd-core)
[ -e /usr/lib/proftpd/mod_tls.so ] || need+=(proftpd-mod-crypto)
# Debian's chromium for the dashboard's browser test (Playwright drives it; never
# `playwright install`, which downloads a browser build of its own)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v gpg >/dev/null || need+=(gnupg)  # PGP encryption of routes (gpg as a pipe)
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
fi
.venv/bin/ruff check src tests bench
.venv/bin/mypy
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
