"""The store fixtures, parametrised over backends: SQLite, and DynamoDB on moto's server.

``make_store()`` opens another Store on the same storage, as a second process
or a second runner would; every Store a test opens is closed after it. Each
DynamoDB test gets its own table prefix, so tests never see each other's items.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from fileferry.sandbox.s3 import MotoServer
from fileferry.store import Backend, SqliteBackend, Store
from fileferry.store.dynamodb import DynamoBackend
from tests.store.wrappers import CountingBackend

MakeStore = Callable[..., Store]
BACKENDS = ["sqlite", "dynamodb"]


def dynamo_prefix() -> str:
    """A table prefix no other test uses."""
    return f"ff-{secrets.token_hex(4)}"


def dynamo_url(moto: MotoServer, prefix: str) -> str:
    return (f"dynamodb://?region=us-east-1&table_prefix={prefix}"
            f"&endpoint_url={moto.endpoint_url}")


@pytest.fixture(params=BACKENDS)
async def make_store(request: pytest.FixtureRequest,
                     tmp_path: Path) -> AsyncIterator[MakeStore]:
    stores: list[Store] = []
    prefix = dynamo_prefix()

    def backend() -> Backend:
        if request.param == "sqlite":
            return SqliteBackend(tmp_path / "state" / "fileferry.db")
        moto: MotoServer = request.getfixturevalue("moto")
        return DynamoBackend(region="us-east-1", table_prefix=prefix,
                             endpoint_url=moto.endpoint_url)

    def make(clock: Callable[[], float] = time.time, counted: bool = False) -> Store:
        inner = backend()
        store = Store(CountingBackend(inner) if counted else inner, clock=clock)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
def store(make_store: MakeStore) -> Store:
    return make_store()


@pytest.fixture
def backend(make_store: MakeStore) -> Backend:
    return make_store().backend
