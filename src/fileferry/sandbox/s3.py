"""moto's S3 server in a child process on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from fileferry.sandbox.net import free_port, wait_for_port

__all__ = ["MotoServer"]


class MotoServer:
    """``with MotoServer(log_dir) as s3: s3.endpoint_url`` (S3, DynamoDB, ... over HTTP)."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self._log_dir = log_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process's pid while it runs (the benchmark counts its CPU)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self, attempts: int = 3) -> MotoServer:
        for _ in range(attempts):
            self.port = free_port()
            env = {**os.environ, "MOTO_PORT": str(self.port)}
            # moto.server, with each DynamoDB request atomic as DynamoDB's are
            command = [sys.executable, "-m", "fileferry.sandbox.moto_main", "-H", "127.0.0.1",
                       "-p", str(self.port)]
            if self._log_dir is None:
                self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.STDOUT, env=env)
            else:
                with open(self._log_dir / "moto.log", "ab") as log:
                    self._proc = subprocess.Popen(command, stdout=log,
                                                  stderr=subprocess.STDOUT, env=env)
            if wait_for_port(self.port, 20) and self._proc.poll() is None:
                return self
            self.stop()
        raise RuntimeError("moto's S3 server did not start; is moto[server] installed?")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
