"""The DynamoDB backend: one table per store table, the same primitives as SQLite.

``{table_prefix}-{table}`` (``FileFerry-transfers``, ...) has string keys
``pk`` (HASH) and ``sk`` (RANGE) and is billed per request; ``dynamo_items``
says how an item is laid out. The leases table has TTL on ``expires_at``.

* **Conditions** are evaluated by DynamoDB: ``if_absent`` is
  ``attribute_not_exists(pk)``, ``if_version`` is ``version = :v`` (false
  for a missing item); ``ConditionalCheckFailedException`` becomes
  :class:`ConditionFailed`. Every read is strongly consistent, as leases and
  appends need.
* **scan** reads every matching item of the table (a parallel scan of four
  segments, all pages, the filter applied by DynamoDB), then sorts by (pk, sk)
  and applies ``start_after`` and ``limit`` here: DynamoDB scans in hash
  order, so this is the way to the SQLite backend's ordering. The cost: each
  call reads the whole table (a filter does not lower consumed reads), so a
  page of ``list_transfers`` costs one pass over the transfers. That is fine
  for thousands of transfers; past that, a GSI with one constant partition
  and ``pk`` as its sort key is the way.
* **put_many** sends batches of 25 (``BatchWriteItem``) in parallel and
  re-sends unprocessed items with backoff; duplicate keys keep the last row.
* **Threads.** boto3 is synchronous: calls run on this backend's small thread
  pool, so the event loop never waits. Clients come from one boto3 session per
  process (a client from a warm session costs ~7 ms, a cold one ~70 ms).
* **Tables on first use.** An operation that finds its table missing
  (``ResourceNotFoundException``) creates it (or waits while another process
  does), enables TTL, waits until it is ACTIVE and runs again; a lock per
  table keeps it to one CreateTable per process. Without the right to create
  tables the error says to run ``fileferry store init`` with an identity that
  has it. ``create_schema`` (that command) does the same for every table.
* **Errors** from botocore become the error tree (:func:`map_dynamodb_error`),
  naming the table and what to do.
"""

from __future__ import annotations

import asyncio
import functools
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import boto3
import botocore.exceptions
from botocore.config import Config

from fileferry.errors import (
    AuthenticationFailed,
    ConfigError,
    EndpointUnavailable,
    FileFerryError,
    PermissionDenied,
)
from fileferry.store import dynamo_items as items
from fileferry.store.base import TABLES, ConditionFailed, Item, Row, SchemaEntry
from fileferry.store.urls import DEFAULT_TABLE_PREFIX

__all__ = ["DynamoBackend", "map_dynamodb_error"]

T = TypeVar("T")
Client = Any  # botocore's DynamoDB client: typed only at this boundary
BATCH = 25  # BatchWriteItem's limit
BATCH_ATTEMPTS = 8
SCAN_SEGMENTS = 4  # a parallel scan: a whole-table read in a quarter of the time

_DENIED = {"AccessDeniedException", "AccessDenied"}
_BAD_CREDENTIALS = {"UnrecognizedClientException", "InvalidSignatureException",
                    "ExpiredTokenException", "MissingAuthenticationTokenException",
                    "IncompleteSignatureException", "InvalidClientTokenId"}
_BUSY = {"ProvisionedThroughputExceededException", "ThrottlingException",
         "RequestLimitExceeded", "InternalServerError", "ServiceUnavailable",
         "LimitExceededException"}
_UNREACHABLE = (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)

_session_lock = threading.Lock()
_session: boto3.session.Session | None = None
_table_locks: dict[tuple[str, str], threading.Lock] = {}


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _table_lock(place: str, name: str) -> threading.Lock:
    with _session_lock:
        return _table_locks.setdefault((place, name), threading.Lock())


def _new_client(region: str | None, endpoint_url: str | None, config: Config) -> Client:
    global _session
    with _session_lock:  # a boto3 session is not thread-safe; its clients are
        if _session is None:
            _session = boto3.session.Session()
        return _session.client("dynamodb", region_name=region, endpoint_url=endpoint_url,
                               config=config)


class DynamoBackend:
    """The store's primitives over DynamoDB tables ``{table_prefix}-{table}``.

    ``region`` and ``endpoint_url`` default to boto3's own lookup (which honours
    ``AWS_REGION`` and ``AWS_ENDPOINT_URL_DYNAMODB``). Nothing is contacted
    until first use.
    """

    def __init__(self, *, region: str | None = None, table_prefix: str = DEFAULT_TABLE_PREFIX,
                 endpoint_url: str | None = None, max_attempts: int = 5, workers: int = 8,
                 connect_timeout: float = 5.0, read_timeout: float = 20.0,
                 active_timeout: float = 300.0) -> None:
        self.region = region
        self.table_prefix = table_prefix
        self.endpoint_url = endpoint_url
        self._config = Config(retries={"mode": "standard", "max_attempts": max_attempts},
                              connect_timeout=connect_timeout, read_timeout=read_timeout,
                              max_pool_connections=workers)
        self._active_timeout = active_timeout
        self._executor = ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="fileferry-dynamodb")
        self._client_lock = threading.Lock()
        self._client: Client | None = None
        self._closed = False

    def table_name(self, table: str) -> str:
        return f"{self.table_prefix}-{table}"

    @property
    def place(self) -> str:
        """Where the tables are, for messages: the endpoint, else the region."""
        endpoint = self._client.meta.endpoint_url if self._client else self.endpoint_url
        return f"DynamoDB at {endpoint}" if endpoint else \
            f"DynamoDB in {self.region or 'the default region'}"

    # --- running calls off the event loop

    def _connect(self) -> Client:
        with self._client_lock:
            if self._client is None:
                self._client = _new_client(self.region, self.endpoint_url, self._config)
            return self._client

    def _run(self, table: str, fn: Callable[[Client], T]) -> T:
        """``fn(client)`` on a worker thread; a missing table is created, then fn runs again."""
        try:
            client = self._connect()
            try:
                return fn(client)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "ResourceNotFoundException":
                    raise
            self._ensure_table(client, table)
            return fn(client)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise map_dynamodb_error(exc, self.table_name(table), self.place) from exc

    async def _call(self, table: str, fn: Callable[[Client], T]) -> T:
        if self._closed:
            raise RuntimeError(f"the DynamoDB store {self.table_prefix}-* is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, table, fn)

    # --- tables

    def _ensure_table(self, client: Client, table: str) -> SchemaEntry:
        """Create the table unless it exists, wait until ACTIVE, enable its TTL."""
        name, ttl = self.table_name(table), TABLES.get(table)
        created = False
        with _table_lock(self.place, name):
            if self._status(client, name) is None:
                try:
                    client.create_table(
                        TableName=name, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                              {"AttributeName": "sk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                   {"AttributeName": "sk", "KeyType": "RANGE"}])
                    created = True
                except botocore.exceptions.ClientError as exc:
                    if _code(exc) in _DENIED:
                        raise PermissionDenied(
                            f"table {name} does not exist in {self.place} and this identity "
                            "may not create it: run `fileferry store init` with one that may "
                            "(dynamodb:CreateTable, UpdateTimeToLive)") from exc
                    if _code(exc) != "ResourceInUseException":  # in use: someone else creates
                        raise
            self._wait_active(client, name)
            if ttl:
                self._enable_ttl(client, name, ttl)
        return SchemaEntry(table=name, status="created" if created else "existed", ttl=ttl)

    def _status(self, client: Client, name: str) -> str | None:
        try:
            return str(client.describe_table(TableName=name)["Table"]["TableStatus"])
        except botocore.exceptions.ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise

    def _wait_active(self, client: Client, name: str) -> None:
        # Not boto3's waiter: it polls every 20 s, and tables take a few seconds.
        deadline = time.monotonic() + self._active_timeout
        pause = 0.05
        while (status := self._status(client, name)) != "ACTIVE":
            if time.monotonic() > deadline:
                raise EndpointUnavailable(f"table {name} in {self.place} is still {status} "
                                          f"after {self._active_timeout:.0f} s; try again")
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _enable_ttl(self, client: Client, name: str, attribute: str) -> None:
        described = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if described.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            if described.get("AttributeName") != attribute:
                raise ConfigError(f"table {name} has TTL on {described.get('AttributeName')}, "
                                  f"not {attribute}: disable it, then run `fileferry store init`")
            return
        try:
            client.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": attribute})
        except botocore.exceptions.ClientError as exc:
            # Another process enabled it between our look and our update.
            if "already enabled" not in str(exc).lower():
                raise

    async def create_schema(self) -> list[SchemaEntry]:
        """Every table in ``base.TABLES``, created in parallel where missing, TTL on."""
        return list(await asyncio.gather(*(
            self._call(table, functools.partial(self._ensure_table, table=table))
            for table in TABLES)))

    # --- the primitives (see base.Backend for their contract)

    async def get(self, table: str, pk: str, sk: str) -> Item | None:
        name = self.table_name(table)

        def run(client: Client) -> Item | None:
            found = client.get_item(TableName=name, Key=items.key(pk, sk), ConsistentRead=True,
                                    ProjectionExpression="#i",
                                    ExpressionAttributeNames={"#i": "item"}).get("Item")
            return None if found is None else items.item_of(found)

        return await self._call(table, run)

    async def put(self, table: str, pk: str, sk: str, item: Item, *, if_absent: bool = False,
                  if_version: int | None = None) -> None:
        if if_absent and if_version is not None:
            raise ValueError("put: if_absent and if_version exclude each other")
        args: dict[str, Any] = {"TableName": self.table_name(table),
                                "Item": items.encode(table, pk, sk, item)}
        if if_absent:
            args.update(ConditionExpression="attribute_not_exists(#k)",
                        ExpressionAttributeNames={"#k": "pk"})
        elif if_version is not None:
            args.update(ConditionExpression="#v = :v", ExpressionAttributeNames={"#v": "version"},
                        ExpressionAttributeValues={":v": {"N": str(if_version)}})

        def run(client: Client) -> None:
            try:
                client.put_item(**args)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
                wanted = "absent" if if_absent else f"at version {if_version}"
                raise ConditionFailed(f"{table}/{pk}/{sk} is not {wanted}") from None

        await self._call(table, run)

    async def delete(self, table: str, pk: str, sk: str) -> None:
        name = self.table_name(table)
        await self._call(table, lambda client: client.delete_item(TableName=name,
                                                                  Key=items.key(pk, sk)))

    async def query(self, table: str, pk: str, *, sk_prefix: str = "", limit: int | None = None,
                    reverse: bool = False) -> list[Row]:
        if limit is not None and limit <= 0:
            return []
        args: dict[str, Any] = {
            "TableName": self.table_name(table), "ConsistentRead": True,
            "ScanIndexForward": not reverse, "KeyConditionExpression": "#k = :k",
            "ProjectionExpression": "#k, #s, #i",
            "ExpressionAttributeNames": {"#k": "pk", "#s": "sk", "#i": "item"},
            "ExpressionAttributeValues": {":k": {"S": pk}}}
        if sk_prefix:
            args["KeyConditionExpression"] += " AND begins_with(#s, :p)"
            args["ExpressionAttributeValues"][":p"] = {"S": sk_prefix}
        return await self._call(table, functools.partial(_pages, "query", args, limit))

    async def scan(self, table: str, *, where: Mapping[str, Any] | None = None,
                   limit: int | None = None,
                   start_after: tuple[str, str] | None = None) -> list[Row]:
        args: dict[str, Any] = items.filter_expression(where or {})
        args.update(TableName=self.table_name(table), ConsistentRead=True,
                    ProjectionExpression="#k, #s, #i")
        args["ExpressionAttributeNames"] = {**args.get("ExpressionAttributeNames", {}),
                                            "#k": "pk", "#s": "sk", "#i": "item"}
        segments = await asyncio.gather(*(
            self._call(table, functools.partial(
                _pages, "scan", {**args, "Segment": i, "TotalSegments": SCAN_SEGMENTS}, None))
            for i in range(SCAN_SEGMENTS)))
        rows = [row for segment in segments for row in segment]
        rows.sort(key=lambda row: (row.pk, row.sk))  # code points: SQLite's BINARY order
        if start_after is not None:
            rows = [row for row in rows if (row.pk, row.sk) > start_after]
        return rows if limit is None else rows[:max(limit, 0)]

    async def reap(self, table: str, now: float) -> int:
        """Nothing to do: the table's TTL (``create_schema``, the template) reaps expired
        items within a day or two; until then reads still return them."""
        return 0

    async def put_many(self, table: str, rows: Sequence[Row]) -> None:
        latest = {(row.pk, row.sk): row for row in rows}  # BatchWriteItem refuses duplicates
        requests = [{"PutRequest": {"Item": items.encode(table, row.pk, row.sk, row.item)}}
                    for row in latest.values()]
        name = self.table_name(table)
        await asyncio.gather(*(
            self._call(table, functools.partial(_batch_write, name, requests[i:i + BATCH]))
            for i in range(0, len(requests), BATCH)))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown)  # lets running calls finish
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _pages(operation: str, args: dict[str, Any], limit: int | None,
           client: Client) -> list[Row]:
    """Every page of a query or scan, stopping once ``limit`` rows are in."""
    rows: list[Row] = []
    while True:
        if limit is not None:
            args = {**args, "Limit": limit - len(rows)}
        page = getattr(client, operation)(**args)
        rows += [items.decode(record) for record in page.get("Items", [])]
        start = page.get("LastEvaluatedKey")
        if not start or (limit is not None and len(rows) >= limit):
            return rows
        args = {**args, "ExclusiveStartKey": start}


def _batch_write(name: str, requests: list[dict[str, Any]], client: Client) -> None:
    """One BatchWriteItem, re-sending what DynamoDB left unprocessed (throttling)."""
    pending: dict[str, Any] = {name: requests}
    for attempt in range(BATCH_ATTEMPTS):
        pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        if not pending:
            return
        time.sleep(random.uniform(0, min(0.05 * 2 ** attempt, 2.0)))
    left = sum(len(v) for v in pending.values())
    raise EndpointUnavailable(f"DynamoDB left {left} writes to {name} unprocessed after "
                              f"{BATCH_ATTEMPTS} attempts (throttled); try again later")


def map_dynamodb_error(exc: Exception, table: str, place: str) -> Exception:
    """The error tree's view of a botocore error on ``table`` (the caller raises it
    ``from exc``); a request DynamoDB finds invalid (key or item too large) is a ValueError."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = _code(exc)
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if code in _DENIED:
            return PermissionDenied(
                f"{place} refused access to table {table} ({code}); grant this identity "
                "dynamodb:GetItem, PutItem, DeleteItem, Query, Scan, BatchWriteItem and "
                "DescribeTable on it")
        if code in _BAD_CREDENTIALS:
            return AuthenticationFailed(f"{place} rejected the AWS credentials ({code}) using "
                                        f"table {table}; check AWS_PROFILE or the access keys")
        if code == "ResourceNotFoundException":
            return ConfigError(f"table {table} does not exist in {place}: run `fileferry store "
                               "init`, or check store.url's region and table_prefix")
        if code in _BUSY:
            return EndpointUnavailable(f"{place} is throttling or failing requests on table "
                                       f"{table} ({code}) after retries; try again later")
        if code == "ValidationException":
            return ValueError(f"{place} refused a request on table {table}: {message}")
        return FileFerryError(f"{place} failed on table {table}: {code} {message}")
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return ConfigError("no AWS region for the DynamoDB store: add ?region=REGION to "
                           "store.url, or set AWS_REGION")
    if isinstance(exc, botocore.exceptions.NoCredentialsError |
                  botocore.exceptions.PartialCredentialsError |
                  botocore.exceptions.CredentialRetrievalError):
        return ConfigError(f"no usable AWS credentials for table {table} ({exc}): set "
                           "AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                           "run where a role applies")
    if isinstance(exc, _UNREACHABLE):
        return EndpointUnavailable(f"cannot reach {place} for table {table} ({exc}); check "
                                   "store.url's endpoint_url and region, and the network")
    return FileFerryError(f"{place} failed on table {table}: {exc}")
