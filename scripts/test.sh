#!/usr/bin/env bash
# Lint, type-check and run the whole test suite against real local servers
# (moto's S3 server, OpenSSH's sshd). Extra arguments go to pytest.
source "$(dirname "$0")/bootstrap.sh"
if [ ! -x /usr/sbin/sshd ]; then
  apt_install openssh-server
fi
.venv/bin/ruff check src tests
.venv/bin/mypy
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
