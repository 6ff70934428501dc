"""The delivery ledger: which object versions each route has sent, built on the Store.

Tables (pk / sk), written only through the Store's conditional puts, so they
behave the same on every backend::

    ledger       route / "<key>#<etag>"   LedgerEntry: claimed, delivered or released
    route_state  route / "_"              the delivery counter ({seq}), last run, last fire,
                                          the follow-up run asked for (min_age)
    plaintext    transfer_id / source     plaintext digests of an encrypted file

A route run *claims* each object version it is about to send (a conditional
create, so two overlapping runs can never both claim one), the workflow marks
it *delivered* once verified, and a failed or abandoned transfer *releases*
what it did not deliver so the next run picks it up again. ``#`` never
occurs in an ETag, so the sort key is unambiguous.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fileferry.store.base import ONE, ConditionFailed, Item, Store

__all__ = ["Ledger", "LedgerEntry", "RouteState"]

EntryState = Literal["claimed", "delivered", "released"]


class LedgerEntry(BaseModel):
    """One object version a route claimed or delivered."""

    model_config = ConfigDict(extra="ignore")

    route: str
    bucket: str
    key: str
    etag: str
    version_id: str | None = None
    size: int
    state: EntryState
    transfer_id: str
    claimed_at: float
    destination: str | None = None
    sha256: str | None = None
    """Of the plaintext (the object as S3 holds it)."""
    ciphertext_sha256: str | None = None
    ciphertext_size: int | None = None
    delivered_at: float | None = None
    actions: dict[str, str] = Field(default_factory=dict)
    """Post-delivery action -> ``done``, ``skipped: why`` or ``failed: why``."""

    @property
    def sort_key(self) -> str:
        return f"{self.key}#{self.etag}"


class RouteState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    seq: int = 0
    last_run: dict[str, Any] | None = None
    last_transfer: dict[str, Any] | None = None
    """The last run that started a transfer (polls that find nothing do not)."""
    last_fire: float | None = None
    follow_up: float | None = None
    """When a run skipped objects for ``min_age``: when the first becomes old enough (kept
    in the store, so a scheduler that starts anew, or a Lambda tick, still runs it)."""


def _body(item: Item) -> Item:
    return {k: v for k, v in item.items() if k != "version"}


class Ledger:
    """The ledger of one store; every method is safe against concurrent writers."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # --- entries

    async def entries(self, route: str) -> list[LedgerEntry]:
        """Every entry of the route, ordered by key then ETag."""
        rows = await self._store.backend.query("ledger", route)
        return [LedgerEntry.model_validate(r.item) for r in rows]

    async def claim(self, entry: LedgerEntry) -> bool:
        """Claim an object version for ``entry.transfer_id``: True when it was free
        (never seen, or released by a failed transfer), False when another transfer
        claimed or delivered it."""
        sk = entry.sort_key
        current = await self._store.backend.get("ledger", entry.route, sk)
        if current is not None and current.get("state") != "released":
            return False
        value = entry.model_dump()
        try:
            await self._store._put("ledger", entry.route, sk, value,
                                   None if current is None else int(current["version"]))
        except ConditionFailed:
            return False
        return True

    async def update(self, route: str, key: str, etag: str, transfer_id: str,
                     **changes: Any) -> LedgerEntry | None:
        """Apply ``changes`` to the entry if ``transfer_id`` holds it (claimed or
        delivered by it); None when there is no such entry."""
        def change(current: Item | None) -> Item | None:
            if current is None or current.get("transfer_id") != transfer_id:
                return None
            merged = {**_body(current), **changes}
            return merged if merged != _body(current) else None

        item = await self._store._modify("ledger", route, f"{key}#{etag}", change)
        if item is None or item.get("transfer_id") != transfer_id:
            return None
        return LedgerEntry.model_validate(item)

    async def release(self, route: str, key: str, etag: str, transfer_id: str) -> bool:
        """Give a claim back (the transfer did not deliver it); delivered entries stay."""
        def change(current: Item | None) -> Item | None:
            if current is None or current.get("transfer_id") != transfer_id \
                    or current.get("state") != "claimed":
                return None
            return {**_body(current), "state": "released"}

        item = await self._store._modify("ledger", route, f"{key}#{etag}", change)
        return item is not None and item.get("state") == "released"

    # --- per-route state

    async def state(self, route: str) -> RouteState:
        item = await self._store.backend.get("route_state", route, ONE)
        return RouteState() if item is None else RouteState.model_validate(item)

    async def _change_state(self, route: str, **changes: Any) -> RouteState:
        def change(current: Item | None) -> Item:
            return {**RouteState().model_dump(), **_body(current or {}), **changes}

        item = await self._store._modify("route_state", route, ONE, change)
        return RouteState.model_validate(item)

    async def reserve_seq(self, route: str, count: int) -> int:
        """Reserve ``count`` delivery numbers; returns the first. Numbers of a failed
        run are not reused (a partner sees gaps, never duplicates)."""
        def change(current: Item | None) -> Item:
            body = {**RouteState().model_dump(), **_body(current or {})}
            return {**body, "seq": int(body["seq"]) + count}

        item = await self._store._modify("route_state", route, ONE, change)
        assert item is not None
        return int(item["seq"]) - count + 1

    async def record_run(self, route: str, summary: dict[str, Any]) -> None:
        if summary.get("transfer_id"):
            await self._change_state(route, last_run=summary, last_transfer=summary)
        else:
            await self._change_state(route, last_run=summary)

    async def claim_fire(self, route: str, fire: float) -> bool:
        """Take the scheduled slot ``fire`` for this process: True exactly once per slot
        across every scheduler sharing the store."""
        first, _ = await self._store.record_once("route_fire", f"{route}@{fire:.0f}",
                                                 {"at": fire})
        if first:
            await self._change_state(route, last_fire=fire)
        return first

    async def set_follow_up(self, route: str, at: float) -> None:
        """Ask for a run at ``at``; an earlier pending request is kept (that run asks
        again for what is still too new then)."""
        def change(current: Item | None) -> Item | None:
            body = {**RouteState().model_dump(), **_body(current or {})}
            pending = body.get("follow_up")
            wanted = at if pending is None else min(float(pending), at)
            return None if pending == wanted else {**body, "follow_up": wanted}

        await self._store._modify("route_state", route, ONE, change)

    async def take_follow_up(self, route: str, now: float) -> bool:
        """Clear the follow-up request if it is due at ``now``: True for the caller that
        cleared it (a request made meanwhile for a later time stays)."""
        taken = False

        def change(current: Item | None) -> Item | None:
            nonlocal taken
            body = {**RouteState().model_dump(), **_body(current or {})}
            pending = body.get("follow_up")
            taken = pending is not None and float(pending) <= now
            return {**body, "follow_up": None} if taken else None

        await self._store._modify("route_state", route, ONE, change)
        return taken

    # --- plaintext digests of encrypted files

    async def note_plaintext(self, transfer_id: str, source: str, sha256: str,
                             size: int) -> None:
        """Remember what an encrypted file held before encryption (last writer wins: a
        retry re-reads the same object)."""
        await self._store._modify("plaintext", transfer_id, source,
                                  lambda _: {"sha256": sha256, "size": size})

    async def plaintext(self, transfer_id: str) -> dict[str, tuple[str, int]]:
        """Source -> (sha256, size) of the transfer's encrypted files."""
        rows = await self._store.backend.query("plaintext", transfer_id)
        return {r.sk: (str(r.item["sha256"]), int(r.item["size"])) for r in rows}
