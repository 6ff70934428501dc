"""A route run's batch: the object versions it claimed and the remote name of each.

The batch is written once to the store (``record_once``) before the workflow
starts and read back by ``ValidateInput`` and ``PostDelivery``, so the
workflow's state carries only the route's name, never the file list (Step
Functions' 256 KiB payload limit), and a resumed run uses the very same
names, dates and sequence numbers. Files are a list, not a mapping: object
keys never become keys of a stored document (the store refuses keys named
like secrets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from fileferry.automation.naming import FileFacts, file_fields, render
from fileferry.automation.objects import S3Object
from fileferry.automation.settings import RouteSettings
from fileferry.errors import ValidationError
from fileferry.store import Store
from fileferry.transfer.copy import alternative_name

__all__ = ["Batch", "BatchFile", "batch_names", "load_batch", "name_files", "save_batch"]

SCOPE = "route_batch"


class BatchFile(BaseModel):
    source: str
    key: str
    etag: str
    size: int
    name: str
    """Relative to the route's destination directory."""
    seq: int


class Batch(BaseModel):
    route: str
    bucket: str
    prefix: str
    run_at: float
    files: list[BatchFile]

    @property
    def source_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def name_files(route_name: str, route: RouteSettings, objects: Sequence[S3Object],
               transfer_id: str, first_seq: int, when: datetime,
               on_conflict: str) -> list[BatchFile]:
    """Render each object's remote name. Two objects of one batch with the same name
    get ``-1``, ``-2``... under ``on_conflict: rename``; otherwise the batch is refused."""
    template = route.options.name_template
    taken: dict[str, str] = {}
    out = []
    for i, obj in enumerate(objects):
        seq = first_seq + i
        fields: dict[str, Any] = {**file_fields(FileFacts(obj.key, route.source.prefix)),
                                  "transfer_id": transfer_id, "seq": seq, "route": route_name}
        name = render(template, fields, when)
        if name in taken:
            if on_conflict != "rename":
                raise ValidationError(
                    f"routes.{route_name}.options.naming gives {name!r} to both "
                    f"{taken[name]} and {obj.key}; add {{path}} or {{seq}} to the template, "
                    "or set the destination's on_conflict: rename")
            n = 1
            while alternative_name(name, n) in taken:
                n += 1
            name = alternative_name(name, n)
        taken[name] = obj.key
        out.append(BatchFile(source=f"s3://{route.source.bucket}/{obj.key}", key=obj.key,
                             etag=obj.etag, size=obj.size, name=name, seq=seq))
    return out


async def save_batch(store: Store, transfer_id: str, batch: Batch) -> Batch:
    _, stored = await store.record_once(SCOPE, transfer_id, batch.model_dump())
    return Batch.model_validate(stored)


async def load_batch(store: Store, transfer_id: str) -> Batch | None:
    stored = await store.recorded(SCOPE, transfer_id)
    return None if stored is None else Batch.model_validate(stored)


async def batch_names(store: Store, transfer_id: str,
                      options: Mapping[str, Any]) -> dict[str, str] | None:
    """Source URI -> remote name for a route's transfer; None for any other transfer."""
    if not options.get("route"):
        return None
    batch = await load_batch(store, transfer_id)
    if batch is None:
        raise ValidationError(f"{transfer_id} names route {options['route']!r} but its batch "
                              "is not in the store; run the route again")
    return {f.source: f.name for f in batch.files}
