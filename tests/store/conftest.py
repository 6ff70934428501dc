"""The store fixtures, parametrised over backends (SQLite now; DynamoDB joins later).

``make_store()`` opens another Store on the same storage, as a second process
or a second runner would; every Store a test opens is closed after it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from fileferry.store import Backend, SqliteBackend, Store
from tests.store.wrappers import CountingBackend

MakeStore = Callable[..., Store]
BACKENDS = ["sqlite"]


def _backend(kind: str, tmp_path: Path) -> Backend:
    if kind == "sqlite":
        return SqliteBackend(tmp_path / "state" / "fileferry.db")
    raise AssertionError(kind)


@pytest.fixture(params=BACKENDS)
async def make_store(request: pytest.FixtureRequest,
                     tmp_path: Path) -> AsyncIterator[MakeStore]:
    stores: list[Store] = []

    def make(clock: Callable[[], float] = time.time, counted: bool = False) -> Store:
        backend = _backend(request.param, tmp_path)
        store = Store(CountingBackend(backend) if counted else backend, clock=clock)
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
