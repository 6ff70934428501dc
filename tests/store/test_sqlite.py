"""open_store's URLs and what the SQLite backend does on first use."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from fileferry.store import SqliteBackend, TransferRecord, open_store


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
    with pytest.raises(NotImplementedError, match="DynamoDB arrives with the API issue"):
        open_store("dynamodb://fileferry-state?region=eu-west-1")
    for url in ("sqlite:///", "postgres://x/y", "/tmp/x.db"):
        with pytest.raises(ValueError, match=r"store\.url"):
            open_store(url)
