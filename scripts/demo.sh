#!/usr/bin/env bash
# The main job on the embedded default: a real transfer through local stand-in
# servers (moto's S3 and an SFTP server on 127.0.0.1). Extra arguments go to
# `fileferry demo` (e.g. --keep-running).
source "$(dirname "$0")/bootstrap.sh"
exec .venv/bin/fileferry demo "$@"
