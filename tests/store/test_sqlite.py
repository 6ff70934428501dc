"""open_store's URLs and what the SQLite backend does on first use (SQLite only: files)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from fileferry.store import SqliteBackend, TransferRecord, init_store, open_store


async def test_file_url_creates_directories_and_schema_on_first_use(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "fileferry.db"
    store = open_store(f"sqlite:///{db}")
    assert not db.parent.exists()  # nothing happens before first use
    async with store:
        await store.record_once("s", "k", {"v": 1})
    assert db.exists()
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    async with open_store(f"sqlite:///{db}") as again:  # the data outlives the store
        assert await again.record_once("s", "k", {"v": 2}) == (False, {"v": 1})


async def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = open_store("sqlite:///~/.local/share/fileferry/fileferry.db")
    assert isinstance(store.backend, SqliteBackend)
    assert store.backend.path == str(tmp_path / ".local/share/fileferry/fileferry.db")
    await store.close()  # never used: nothing to create, nothing left open
    assert not (tmp_path / ".local").exists()


async def test_memory_url() -> None:
    async with open_store("sqlite:///:memory:") as store:
        await store.create_transfer(TransferRecord(transfer_id="tr-1", requester="a",
                                                   sources=[], destination="d:"))
        assert await store.get_transfer("tr-1") is not None


def test_other_urls_are_refused() -> None:
    for url in ("sqlite:///", "postgres://x/y", "/tmp/x.db", "dynamodb://fileferry-state"):
        with pytest.raises(ValueError, match=r"store\.url .*(sqlite|dynamodb)://"):
            open_store(url)


async def test_init_creates_the_schema_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s/fileferry.db"
    [entry] = await init_store(url)
    assert (entry.status, entry.ttl) == ("created", None)
    assert str(tmp_path / "s" / "fileferry.db") in entry.table
    [again] = await init_store(url)
    assert again.status == "existed"
