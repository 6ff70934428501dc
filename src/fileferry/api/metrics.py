"""Prometheus metrics of the transfers this server runs, in a registry of its own
(one per app, so two apps in one process, as in the tests, never collide).

Transfers run by other processes (the CLI) are not counted here: each process
counts what it moves.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "ApiMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATIONS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.bytes = Counter("fileferry_bytes_transferred", "Bytes confirmed by destinations",
                             registry=r)
        self.files = Counter("fileferry_files", "Files finished, by status", ["status"],
                             registry=r)
        self.retries = Counter("fileferry_file_retries", "File attempts retried", registry=r)
        self.transfers = Counter("fileferry_transfers", "Transfers finished, by status",
                                 ["status"], registry=r)
        self.failures = Counter("fileferry_transfer_failures",
                                "Transfers that failed or were refused, by error name",
                                ["error"], registry=r)
        self.transfer_seconds = Histogram("fileferry_transfer_duration_seconds",
                                          "Wall time of a transfer, from start to its end",
                                          buckets=DURATIONS, registry=r)
        self.file_seconds = Histogram("fileferry_file_duration_seconds",
                                      "Wall time of one file, from start to verified",
                                      buckets=DURATIONS, registry=r)
        self.running = Gauge("fileferry_transfers_running", "Transfers running now",
                             registry=r)
        self.queued = Gauge("fileferry_transfers_queued", "Transfers waiting for a worker",
                            registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
