"""Which transfers are encrypted, and the source the transfer task reads them through.

A route's ``options.encryption`` wins over its destination's ``encryption``;
a plain ``fileferry transfer`` to a destination with ``encryption`` is
encrypted too. The transfer task asks :func:`transfer_source` and gets the
plain S3 source, or an :class:`~fileferry.automation.pgp.EncryptingSource`
over it whose keyring lives as long as the task.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fileferry.automation.pgp import EncryptingSource, PgpKeys
from fileferry.automation.settings import PgpSettings
from fileferry.endpoints.base import Source
from fileferry.store.ledger import Ledger
from fileferry.transfer.hashing import Digests
from fileferry.workflow.steps.deps import Deps

__all__ = ["encryption_for", "transfer_source"]


async def encryption_for(deps: Deps, transfer_id: str,
                         destination: str) -> tuple[PgpSettings, str] | None:
    """The PGP settings that apply to the transfer and the config key they came from."""
    record = await deps.store.get_transfer(transfer_id)
    route = record.options.get("route") if record is not None else None
    if route and route in deps.settings.routes:
        pgp = deps.settings.routes[route].options.encryption
        if pgp is not None:
            return pgp, f"routes.{route}.options.encryption"
    dest = deps.secrets.destination(destination).encryption
    return (dest, f"destinations.{destination}.encryption") if dest is not None else None


@contextlib.asynccontextmanager
async def transfer_source(deps: Deps, transfer_id: str,
                          destination: str) -> AsyncIterator[tuple[Source, bool]]:
    """(the source to read through, whether it transforms the bytes)."""
    found = await encryption_for(deps, transfer_id, destination)
    if found is None:
        yield deps.s3(), False
        return
    ledger = Ledger(deps.store)

    async def note(source: str, plaintext: Digests) -> None:
        await ledger.note_plaintext(transfer_id, source, plaintext.sha256, plaintext.size)

    from fileferry.identity.secrets import read_secret_text

    def read(ref: str, where: str) -> str:
        return read_secret_text(deps.settings, ref, where)

    async with PgpKeys(*found, read) as keys:
        yield EncryptingSource(deps.s3(), keys, note), True
