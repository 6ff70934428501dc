"""What only the DynamoDB backend has: its URL, its tables and TTL, its item layout, its
errors, and races decided by DynamoDB's conditional writes (on moto's server over HTTP).

The behaviour both backends share is the contract suite (test_backend, test_store,
test_progress), which runs against this backend too.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import boto3
import botocore.exceptions
import pytest

from fileferry.errors import (
    AuthenticationFailed,
    ConfigError,
    EndpointUnavailable,
    FileFerryError,
    PermissionDenied,
)
from fileferry.sandbox.net import free_port
from fileferry.sandbox.s3 import MotoServer
from fileferry.store import TABLES, DynamoUrl, Row, Store, open_store, parse_store_url
from fileferry.store.dynamodb import DynamoBackend, map_dynamodb_error
from tests.store.conftest import dynamo_prefix, dynamo_url
from tests.store.wrappers import CountingBackend


@pytest.fixture(scope="module")
def ddb(moto: MotoServer) -> Any:
    """A plain boto3 client on moto, to look at what the backend wrote."""
    return boto3.client("dynamodb", endpoint_url=moto.endpoint_url, region_name="us-east-1")


def backend_on(moto: MotoServer, prefix: str, **options: Any) -> DynamoBackend:
    return DynamoBackend(region="us-east-1", table_prefix=prefix,
                         endpoint_url=moto.endpoint_url, **options)


def tables_of(ddb: Any, prefix: str) -> set[str]:
    names = ddb.list_tables(Limit=100)["TableNames"]
    while names and len(names) % 100 == 0:  # moto holds every test's tables: page on
        more = ddb.list_tables(ExclusiveStartTableName=names[-1], Limit=100)["TableNames"]
        if not more:
            break
        names += more
    return {n for n in names if n.startswith(f"{prefix}-")}


# --- store.url


def test_url_forms() -> None:
    assert parse_store_url("dynamodb://?region=eu-west-1&table_prefix=FileFerry") == DynamoUrl(
        region="eu-west-1", table_prefix="FileFerry")
    assert parse_store_url("dynamodb://") == DynamoUrl(region=None, table_prefix="FileFerry")
    assert parse_store_url("dynamodb:///?table_prefix=Prod.State_1&endpoint_url="
                           "http://127.0.0.1:8000&region=us-east-1") == DynamoUrl(
        region="us-east-1", table_prefix="Prod.State_1", endpoint_url="http://127.0.0.1:8000")


@pytest.mark.parametrize(("url", "says"), [
    ("dynamodb://fileferry-state?region=eu-west-1", "put every setting in the query"),
    ("dynamodb:?region=eu-west-1", "put every setting in the query"),
    ("dynamodb://?region=eu-west-1&prefix=x", "unknown parameter(s) prefix"),
    ("dynamodb://?region=eu-west-1&region=us-east-1", "gives region twice"),
    ("dynamodb://?region=EU West", "not an AWS region"),
    ("dynamodb://?table_prefix=has space", "table_prefix"),
    ("dynamodb://?table_prefix=", "table_prefix"),
    ("dynamodb://?endpoint_url=localhost:8000", "endpoint_url"),
    ("dynamodb://?endpoint_url=ftp://h", "endpoint_url"),
    ("dynamodb://?region=eu-west-1#x", "fragment"),
])
def test_bad_urls_say_the_accepted_form(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=r"store\.url") as info:
        open_store(url)
    assert says in str(info.value)
    if "query" in says or "unknown" in says:
        assert "dynamodb://?region=REGION&table_prefix=PREFIX" in str(info.value)


def test_credentials_in_the_endpoint_are_refused_and_not_echoed() -> None:
    with pytest.raises(ValueError, match="must not carry credentials") as info:
        parse_store_url("dynamodb://?endpoint_url=http://key:s3cr3t@127.0.0.1:1")
    assert "s3cr3t" not in str(info.value)


async def test_nothing_is_contacted_before_first_use() -> None:
    store = open_store(f"dynamodb://?region=eu-west-1&endpoint_url=http://127.0.0.1:{free_port()}")
    assert isinstance(store.backend, DynamoBackend)
    assert store.backend.table_name("leases") == "FileFerry-leases"
    await store.close()  # never used: no connection made, none refused


async def test_boto3_endpoint_environment_is_honoured(moto: MotoServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint_url)
    async with open_store(f"dynamodb://?region=us-east-1&table_prefix={dynamo_prefix()}") as s:
        assert await s.record_once("scope", "k", {"v": 1}) == (True, {"v": 1})
        assert isinstance(s.backend, DynamoBackend)
        assert moto.endpoint_url in s.backend.place


# --- tables: on first use, by `store init`, TTL


async def test_tables_are_created_on_first_use(moto: MotoServer, ddb: Any) -> None:
    prefix = dynamo_prefix()
    async with open_store(dynamo_url(moto, prefix)) as store:
        assert tables_of(ddb, prefix) == set()
        assert await store.load_checkpoint("ex-1") is None  # a read creates it too
        assert tables_of(ddb, prefix) == {f"{prefix}-checkpoints"}
        assert await store.acquire_lease("ex-1", "me", now=1000.5, ttl=30.0)
    table = ddb.describe_table(TableName=f"{prefix}-leases")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
        "pk": "HASH", "sk": "RANGE"}
    ttl = ddb.describe_time_to_live(TableName=f"{prefix}-leases")["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")
    item = ddb.get_item(TableName=f"{prefix}-leases", Key={"pk": {"S": "ex-1"},
                                                           "sk": {"S": "_"}})["Item"]
    assert item["expires_at"] == {"N": str(math.ceil(1000.5 + 30.0))}  # TTL can reap it


async def test_first_use_from_many_stores_at_once_creates_the_table(moto: MotoServer,
                                                                 ddb: Any) -> None:
    prefix = dynamo_prefix()
    stores = [Store(backend_on(moto, prefix)) for _ in range(3)]
    try:
        results = await asyncio.gather(*(s.record_once("n", "k", {"by": i})
                                         for i, s in enumerate(stores * 3)))
        assert [first for first, _ in results].count(True) == 1
        assert tables_of(ddb, prefix) == {f"{prefix}-idempotency"}
    finally:
        for s in stores:
            await s.close()


async def test_init_creates_every_table_with_ttl_and_is_idempotent(moto: MotoServer,
                                                                   ddb: Any) -> None:
    from fileferry.store import init_store

    prefix = dynamo_prefix()
    url = dynamo_url(moto, prefix)
    async with open_store(url) as store:
        await store.record_once("s", "k", {})  # one table exists already
    entries = {e.table: e for e in await init_store(url)}
    assert set(entries) == {f"{prefix}-{t}" for t in TABLES} == tables_of(ddb, prefix)
    assert entries[f"{prefix}-idempotency"].status == "existed"
    assert {e.status for n, e in entries.items() if not n.endswith("-idempotency")} == {
        "created"}
    assert {n for n, e in entries.items() if e.ttl} == {f"{prefix}-leases"}
    for name, entry in entries.items():
        described = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert (described["TimeToLiveStatus"] == "ENABLED") == (entry.ttl == "expires_at")
    again = await init_store(url)
    assert {e.status for e in again} == {"existed"}


# --- the item layout


async def test_numbers_and_nesting_round_trip_exactly(moto: MotoServer) -> None:
    backend = backend_on(moto, dynamo_prefix())
    item = {"f": 0.1, "g": 1.0, "tiny": 1e-7, "huge": 1e300, "big": 2 ** 70, "neg": -3,
            "nested": {"a": [1, 2.5, {"b": None}], "ü": "ß"}, "flag": False, "version": 1}
    try:
        await backend.put("t", "p", "s", item)
        back = await backend.get("t", "p", "s")
        assert back == item
        assert back is not None and isinstance(back["g"], float) and isinstance(back["big"], int)
        assert [r.item["f"] for r in await backend.scan("t", where={"f": 0.1})] == [0.1]
        assert len(await backend.scan("t", where={"big": 2 ** 70})) == 1
        assert await backend.scan("t", where={"huge": 1.0}) == []  # a number DynamoDB
        with pytest.raises(ValueError, match="cannot hold"):       # cannot hold is kept,
            await backend.scan("t", where={"huge": 1e300})         # but not filterable
        assert await backend.scan("t", where={"nested": None}) == []  # present, not null
        assert len(await backend.scan("t", where={"missing": None, "flag": False})) == 1
    finally:
        await backend.close()


async def test_scan_pages_through_more_than_a_megabyte_in_key_order(moto: MotoServer,
                                                                   ddb: Any) -> None:
    prefix = dynamo_prefix()
    backend = backend_on(moto, prefix)
    # moto pages scans at 1 MB like DynamoDB: 64 items of ~96 KB (with the copies) make
    # ~6 MB, more than a page in most of the scan's four segments; moto returns keys
    # sorted within a segment, DynamoDB in hash order: either way the backend sorts.
    keys = [(f"p{i % 7}-{'é' if i % 3 == 0 else 'e'}", f"{i:03d}") for i in range(64)]
    try:
        await backend.put_many("t", [Row(pk, sk, {"blob": "x" * 48_000, "odd": int(sk) % 2,
                                                  "version": 1}) for pk, sk in keys])
        pages = [ddb.scan(TableName=f"{prefix}-t", Segment=i, TotalSegments=4,
                          ProjectionExpression="pk") for i in range(4)]
        assert sum("LastEvaluatedKey" in page for page in pages) >= 2  # several pages
        rows = await backend.scan("t")
        assert [(r.pk, r.sk) for r in rows] == sorted(keys)
        after = sorted(keys)[3]
        odd = await backend.scan("t", where={"odd": 1}, limit=5, start_after=after)
        expected = [k for k in sorted(keys) if int(k[1]) % 2 and k > after][:5]
        assert [(r.pk, r.sk) for r in odd] == expected
    finally:
        await backend.close()


async def test_put_many_in_batches_keeps_the_last_of_duplicates(moto: MotoServer) -> None:
    backend = backend_on(moto, dynamo_prefix())
    rows = [Row("p", f"{i:03d}", {"n": i, "version": 1}) for i in range(60)]
    rows.append(Row("p", "007", {"n": "last", "version": 2}))
    try:
        await backend.put_many("t", rows)
        found = await backend.query("t", "p")
        assert len(found) == 60 and found[7].item == {"n": "last", "version": 2}
    finally:
        await backend.close()


# --- races decided by DynamoDB's conditional writes


async def test_a_lease_taken_between_read_and_write_is_not_taken_twice(
        moto: MotoServer) -> None:
    prefix = dynamo_prefix()
    counted = CountingBackend(backend_on(moto, prefix))
    store, racer = Store(counted), Store(backend_on(moto, prefix))
    try:
        assert await store.acquire_lease("ex-1", "a", now=0.0, ttl=1.0)  # expires at 1

        async def c_takes_it() -> None:  # after b saw it expired, before b's write
            assert await racer.acquire_lease("ex-1", "c", now=5.0, ttl=30.0)

        counted.before_conditional_put.append(c_takes_it)
        assert not await store.acquire_lease("ex-1", "b", now=5.0, ttl=30.0)
        assert await store.lease_owner("ex-1", now=6.0) == "c"
        assert counted.calls["put", "leases"] == 2  # a's, and b's refused one
    finally:
        await store.close()
        await racer.close()


async def test_record_once_race_keeps_the_first_value(moto: MotoServer) -> None:
    prefix = dynamo_prefix()
    counted = CountingBackend(backend_on(moto, prefix))
    store, racer = Store(counted), Store(backend_on(moto, prefix))
    try:
        async def racer_records() -> None:
            assert await racer.record_once("tickets", "tr-1", {"id": "INC-racer"}) == (
                True, {"id": "INC-racer"})

        counted.before_conditional_put.append(racer_records)
        assert await store.record_once("tickets", "tr-1", {"id": "INC-mine"}) == (
            False, {"id": "INC-racer"})
    finally:
        await store.close()
        await racer.close()


# --- errors


async def test_unreachable_endpoint_names_the_table_and_what_to_do() -> None:
    backend = DynamoBackend(region="us-east-1", table_prefix="Down",
                            endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1)
    try:
        with pytest.raises(EndpointUnavailable) as info:
            await backend.get("transfers", "tr-1", "_")
        assert "Down-transfers" in str(info.value) and "endpoint_url" in str(info.value)
        assert info.value.retryable
    finally:
        await backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        await backend.get("transfers", "tr-1", "_")


def client_error(code: str, operation: str = "PutItem") -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": f"{code} happened"}}, operation)


@pytest.mark.parametrize(("exc", "expected", "says"), [
    (client_error("AccessDeniedException"), PermissionDenied, "grant this identity"),
    (client_error("UnrecognizedClientException"), AuthenticationFailed, "credentials"),
    (client_error("ExpiredTokenException"), AuthenticationFailed, "credentials"),
    (client_error("ResourceNotFoundException"), ConfigError, "fileferry store init"),
    (client_error("ProvisionedThroughputExceededException"), EndpointUnavailable, "try again"),
    (client_error("ThrottlingException"), EndpointUnavailable, "try again"),
    (client_error("InternalServerError"), EndpointUnavailable, "try again"),
    (client_error("ValidationException"), ValueError, "refused a request"),
    (client_error("SomethingNew"), FileFerryError, "SomethingNew"),
    (botocore.exceptions.NoCredentialsError(), ConfigError, "AWS_PROFILE"),
    (botocore.exceptions.NoRegionError(), ConfigError, "?region="),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), EndpointUnavailable,
     "cannot reach"),
    (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), EndpointUnavailable,
     "cannot reach"),
    (botocore.exceptions.ConnectTimeoutError(endpoint_url="http://x"), EndpointUnavailable,
     "cannot reach"),
])
def test_botocore_errors_are_mapped(exc: Exception, expected: type[Exception],
                                    says: str) -> None:
    mapped = map_dynamodb_error(exc, "FileFerry-leases", "DynamoDB in eu-west-1")
    assert type(mapped) is expected
    assert "FileFerry-leases" in str(mapped) or expected is ConfigError
    assert says in str(mapped)
