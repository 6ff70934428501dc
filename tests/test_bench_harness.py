"""The benchmark harness's own plumbing (its numbers are measured by ``python -m bench``)."""

from __future__ import annotations

import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest
from bench.servers import start_s3


def test_the_harness_finds_the_s3_server_process_it_measures(tmp_path: Path) -> None:
    with ExitStack() as stack:
        s3 = start_s3(stack, tmp_path)
        cmdline = Path(f"/proc/{s3.pid}/cmdline").read_bytes().split(b"\0")
        assert b"fileferry.sandbox.moto_main" in cmdline
        with urllib.request.urlopen(s3.endpoint_url + "/", timeout=10) as resp:
            assert resp.status == 200  # the pid is the server answering on the endpoint
        assert s3.cpu_seconds() > 0  # its CPU is what the reports attribute to S3
    with pytest.raises(OSError):  # stopped with the stack
        urllib.request.urlopen(s3.endpoint_url + "/", timeout=5)
