"""The ServiceNow Table API emulator, over real HTTP (requests) and through pysnc."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from fileferry.sandbox.servicenow import ServiceNowEmulator
from fileferry.sandbox.tls import TestPki

TABLE = "/api/now/table"


@pytest.fixture
def sn() -> Iterator[ServiceNowEmulator]:
    with ServiceNowEmulator() as emulator:
        yield emulator


@pytest.fixture
def http(sn: ServiceNowEmulator) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.auth = (sn.username, sn.password)
        session.headers["Accept"] = "application/json"
        yield session


def url(sn: ServiceNowEmulator, path: str) -> str:
    return f"{sn.url}{TABLE}/{path}"


def create(http: requests.Session, sn: ServiceNowEmulator, table: str = "incident",
           **fields: Any) -> dict[str, Any]:
    response = http.post(url(sn, table), json=fields)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


# -- CRUD, numbering, rules ----------------------------------------------------------------

@pytest.mark.parametrize(("table", "fields", "changed"), [
    ("incident", {"short_description": "disk full", "impact": "2"}, {"urgency": "1"}),
    ("change_request", {"short_description": "patch", "type": "standard"}, {"state": "-1"}),
    ("sys_user", {"user_name": "ann", "name": "Ann Example"}, {"email": "ann@example.com"}),
    ("sys_user_group", {"name": "Ferry Ops"}, {"description": "transfers"}),
])
def test_crud_on_each_table(sn: ServiceNowEmulator, http: requests.Session, table: str,
                            fields: dict[str, str], changed: dict[str, str]) -> None:
    response = http.post(url(sn, table), json=fields)
    assert response.status_code == 201
    record = response.json()["result"]
    sys_id = record["sys_id"]
    assert len(sys_id) == 32 and all(c in "0123456789abcdef" for c in sys_id)
    assert response.headers["Location"] == url(sn, f"{table}/{sys_id}")
    assert all(record[k] == v for k, v in fields.items())
    assert record["sys_created_on"] == record["sys_updated_on"]
    assert record["sys_created_by"] == sn.username and record["sys_mod_count"] == "0"

    got = http.get(url(sn, f"{table}/{sys_id}"))
    assert got.status_code == 200 and got.json()["result"] == record

    patched = http.patch(url(sn, f"{table}/{sys_id}"), json=changed).json()["result"]
    assert all(patched[k] == v for k, v in {**fields, **changed}.items())  # merge
    assert patched["sys_mod_count"] == "1"
    put = http.put(url(sn, f"{table}/{sys_id}"), json={"sys_created_by": "evil"})
    assert put.status_code == 200  # PUT merges too; system fields ignore writes
    assert put.json()["result"]["sys_created_by"] == sn.username
    assert all(put.json()["result"][k] == v for k, v in {**fields, **changed}.items())

    head = http.head(url(sn, f"{table}/{sys_id}"))
    assert head.status_code == 200 and head.content == b""
    deleted = http.delete(url(sn, f"{table}/{sys_id}"))
    assert deleted.status_code == 204 and deleted.content == b""
    missing = http.get(url(sn, f"{table}/{sys_id}"))
    assert missing.status_code == 404
    assert missing.json() == {"error": {
        "message": "No Record found",
        "detail": "Record doesn't exist or ACL restricts the record retrieval"},
        "status": "failure"}
    assert http.delete(url(sn, f"{table}/{sys_id}")).status_code == 404


def test_numbering_and_defaults(sn: ServiceNowEmulator, http: requests.Session) -> None:
    first, second = create(http, sn), create(http, sn)
    change = create(http, sn, "change_request")
    assert [first["number"], second["number"]] == ["INC0010001", "INC0010002"]
    assert change["number"] == "CHG0010001" and change["state"] == "-5"
    assert first["state"] == first["incident_state"] == "1" and first["active"] == "true"
    assert first["impact"] == first["urgency"] == "3" and first["priority"] == "5"
    assert [r["number"] for r in sn.records("incident")] == ["INC0010001", "INC0010002"]


@pytest.mark.parametrize(("impact", "urgency", "priority"), [
    ("1", "1", "1"), ("1", "2", "2"), ("1", "3", "3"),
    ("2", "1", "2"), ("2", "2", "3"), ("2", "3", "4"),
    ("3", "1", "3"), ("3", "2", "4"), ("3", "3", "5"),
])
def test_priority_matrix(sn: ServiceNowEmulator, http: requests.Session, impact: str,
                         urgency: str, priority: str) -> None:
    record = create(http, sn, impact=impact, urgency=urgency, priority="1")  # read-only
    assert record["priority"] == priority


def test_priority_follows_updates(sn: ServiceNowEmulator, http: requests.Session) -> None:
    record = create(http, sn, urgency=2)  # numbers are stored as strings
    assert record["urgency"] == "2" and record["priority"] == "4"
    patched = http.patch(url(sn, f"incident/{record['sys_id']}"), json={"impact": "1"})
    assert patched.json()["result"]["priority"] == "2"


def test_concurrent_inserts_get_unique_numbers(sn: ServiceNowEmulator) -> None:
    def post(i: int) -> str:
        response = requests.post(url(sn, "incident"), json={"short_description": str(i)},
                                 auth=(sn.username, sn.password),
                                 headers={"Accept": "application/json"}, timeout=10)
        assert response.status_code == 201
        number: str = response.json()["result"]["number"]
        return number

    with ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(post, range(40)))
    assert sorted(numbers) == [f"INC{n:07d}" for n in range(10001, 10041)]


# -- rendering -------------------------------------------------------------------------------

def test_display_values(sn: ServiceNowEmulator, http: requests.Session) -> None:
    group = sn.add_group("Ferry Ops")
    caller = sn.add_user("ann", "Ann Example")
    sys_id = create(http, sn, assignment_group=group, caller_id=caller, state="2")["sys_id"]
    link = f"{sn.url}{TABLE}/sys_user_group/{group}"

    def get(**params: str) -> dict[str, Any]:
        result: dict[str, Any] = http.get(url(sn, f"incident/{sys_id}"), params=params
                                          ).json()["result"]
        return result

    raw = get()
    assert raw["assignment_group"] == {"link": link, "value": group}
    assert raw["state"] == "2" and raw["assigned_to"] == ""
    assert get(sysparm_exclude_reference_link="true")["assignment_group"] == group
    shown = get(sysparm_display_value="true")
    assert shown["assignment_group"] == {"display_value": "Ferry Ops", "link": link}
    assert shown["caller_id"]["display_value"] == "Ann Example"  # name, not user_name
    assert shown["state"] == "In Progress" and shown["urgency"] == "3 - Low"
    both = get(sysparm_display_value="all")
    assert both["assignment_group"] == {"display_value": "Ferry Ops", "value": group,
                                        "link": link}
    assert both["state"] == {"display_value": "In Progress", "value": "2"}
    assert both["number"] == {"display_value": "INC0010001", "value": "INC0010001"}


def test_sysparm_fields_and_dot_walk(sn: ServiceNowEmulator, http: requests.Session) -> None:
    group = sn.add_group("Ferry Ops")
    create(http, sn, assignment_group=group, short_description="x")
    rows = http.get(url(sn, "incident"), params={
        "sysparm_fields": "number,assignment_group.name,no_such_field"}).json()["result"]
    assert rows == [{"number": "INC0010001", "assignment_group.name": "Ferry Ops"}]


def test_input_display_value(sn: ServiceNowEmulator, http: requests.Session) -> None:
    group = sn.add_group("Ferry Ops")
    response = http.post(url(sn, "incident"), params={"sysparm_input_display_value": "true"},
                         json={"assignment_group": "Ferry Ops", "urgency": "1 - High"})
    assert response.json()["result"]["assignment_group"]["value"] == group
    assert response.json()["result"]["urgency"] == "1"
    unknown = http.post(url(sn, "incident"), params={"sysparm_input_display_value": "true"},
                        json={"assignment_group": "Nobody"})
    assert unknown.status_code == 400


def test_no_response_body_header(sn: ServiceNowEmulator, http: requests.Session) -> None:
    response = http.post(url(sn, "incident"), json={"short_description": "quiet"},
                         headers={"X-no-response-body": "true"})
    assert response.status_code == 201 and response.content == b""
    assert sn.records("incident")[0]["short_description"] == "quiet"


# -- queries and paging ---------------------------------------------------------------------

@pytest.fixture
def seeded(sn: ServiceNowEmulator, http: requests.Session) -> list[str]:
    rows = [("alpha disk", "1", "ff:1:user"), ("beta network", "2", "ff:1:audit"),
            ("gamma disk", "3", ""), ("delta", "2", "FF:2:user")]
    return [create(http, sn, short_description=d, urgency=u, correlation_id=c)["number"]
            for d, u, c in rows]


@pytest.mark.parametrize(("query", "expected"), [
    ("urgency=2", [1, 3]),
    ("urgency!=2", [0, 2]),
    ("short_descriptionLIKEdisk", [0, 2]),
    ("short_descriptionNOTLIKEdisk", [1, 3]),
    ("short_descriptionSTARTSWITHbeta", [1]),
    ("short_descriptionENDSWITHdisk", [0, 2]),
    ("urgency=1^ORurgency=3", [0, 2]),
    ("short_descriptionLIKEdisk^urgency=3^ORurgency=2", [2]),  # a AND (b OR c)
    ("urgency=1^NQurgency=3", [0, 2]),
    ("urgencyIN1,2", [0, 1, 3]),
    ("urgencyNOT IN1,2", [2]),
    ("urgency>1^urgency<=2", [1, 3]),
    ("correlation_idISEMPTY", [2]),
    ("correlation_idISNOTEMPTY^ORDERBYDESCnumber", [3, 1, 0]),
    ("correlation_id=ff:1:user", [0]),  # = is case-sensitive
    ("ORDERBYurgency^ORDERBYDESCnumber", [0, 3, 1, 2]),
    ("", [0, 1, 2, 3]),
])
def test_encoded_queries(sn: ServiceNowEmulator, http: requests.Session, seeded: list[str],
                         query: str, expected: list[int]) -> None:
    response = http.get(url(sn, "incident"), params={"sysparm_query": query,
                                                    "sysparm_fields": "number"})
    assert [r["number"] for r in response.json()["result"]] == [seeded[i] for i in expected]
    assert response.headers["X-Total-Count"] == str(len(expected))


def test_unknown_query_field_is_ignored(sn: ServiceNowEmulator, http: requests.Session,
                                        seeded: list[str]) -> None:
    rows = http.get(url(sn, "incident"),
                    params={"sysparm_query": "no_such_field=ff:1:user"}).json()["result"]
    assert len(rows) == 4  # the trap: matches every row
    rows = http.get(url(sn, "incident"), params={
        "sysparm_query": "no_such_field=x^urgency=3"}).json()["result"]
    assert [r["number"] for r in rows] == [seeded[2]]
    sn.store.strict_queries = True  # glide.invalid_query.returns_no_rows=true
    rows = http.get(url(sn, "incident"),
                    params={"sysparm_query": "no_such_field=ff:1:user"}).json()["result"]
    assert rows == []


def test_plain_field_parameters(sn: ServiceNowEmulator, http: requests.Session,
                                seeded: list[str]) -> None:
    rows = http.get(url(sn, "incident"), params={"urgency": "2"}).json()["result"]
    assert [r["number"] for r in rows] == [seeded[1], seeded[3]]


def test_total_count_and_paging(sn: ServiceNowEmulator, http: requests.Session) -> None:
    for i in range(25):
        sn.add_record("incident", short_description=f"n{i}")
    params = {"sysparm_query": "ORDERBYnumber", "sysparm_limit": "10", "sysparm_offset": "20",
              "sysparm_fields": "number"}
    response = http.get(url(sn, "incident"), params=params)
    assert response.headers["X-Total-Count"] == "25"
    assert [r["number"] for r in response.json()["result"]] == [
        f"INC{n:07d}" for n in range(10021, 10026)]
    links = response.headers["Link"]
    assert 'rel="first"' in links and 'rel="prev"' in links and 'rel="last"' in links
    assert 'rel="next"' not in links and "sysparm_offset=10" in links
    first = http.get(url(sn, "incident"), params={**params, "sysparm_offset": "0"})
    assert 'rel="next"' in first.headers["Link"] and 'rel="prev"' not in first.headers["Link"]
    quiet = http.get(url(sn, "incident"), params={
        **params, "sysparm_no_count": "true", "sysparm_suppress_pagination_header": "true"})
    assert "X-Total-Count" not in quiet.headers and "Link" not in quiet.headers
    bad = http.get(url(sn, "incident"), params={"sysparm_offset": "-1"})
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "Exception while reading request"


def test_empty_result_v1_vs_v2(sn: ServiceNowEmulator, http: requests.Session) -> None:
    query = {"sysparm_query": "number=INC9999999"}
    assert http.get(url(sn, "incident"), params=query).json() == {"result": []}
    v2 = http.get(f"{sn.url}/api/now/v2/table/incident", params=query)
    assert v2.status_code == 200 and v2.json() == {"result": []}
    assert http.get(f"{sn.url}/api/now/v1/table/incident", params=query).status_code == 404


# -- journals and the close data policy -----------------------------------------------------

def test_journal_fields(sn: ServiceNowEmulator, http: requests.Session) -> None:
    sys_id = create(http, sn, work_notes="first [ff:t1:1]")["sys_id"]
    http.patch(url(sn, f"incident/{sys_id}"), json={"work_notes": "second [ff:t1:2]"})
    http.patch(url(sn, f"incident/{sys_id}"), json={"comments": "for the caller",
                                                    "work_notes": ""})  # "" adds nothing
    raw = http.get(url(sn, f"incident/{sys_id}")).json()["result"]
    assert raw["work_notes"] == "" and raw["comments"] == ""
    shown = http.get(url(sn, f"incident/{sys_id}"),
                     params={"sysparm_display_value": "true"}).json()["result"]
    entries = shown["work_notes"].split("\n\n")
    assert entries[0].endswith(" - System Administrator (Work notes)\nsecond [ff:t1:2]")
    assert entries[1].endswith(" - System Administrator (Work notes)\nfirst [ff:t1:1]")
    assert entries[2] == ""
    assert shown["comments"].endswith("(Additional comments)\nfor the caller\n\n")
    journal = http.get(url(sn, "sys_journal_field"), params={
        "sysparm_query": f"element_id={sys_id}^element=work_notes^ORDERBYsys_created_on",
        "sysparm_fields": "name,element,value,sys_created_by"}).json()["result"]
    assert journal == [
        {"name": "incident", "element": "work_notes", "value": "first [ff:t1:1]",
         "sys_created_by": sn.username},
        {"name": "incident", "element": "work_notes", "value": "second [ff:t1:2]",
         "sys_created_by": sn.username}]
    assert len(sn.records("sys_journal_field")) == 3


def test_close_data_policy(sn: ServiceNowEmulator, http: requests.Session) -> None:
    sys_id = create(http, sn, impact="3", urgency="3")["sys_id"]
    denied = http.patch(url(sn, f"incident/{sys_id}"), json={"state": "6"})
    assert denied.status_code == 403
    assert denied.json() == {"error": {
        "message": "Operation Failed",
        "detail": "Data Policy Exception: \n\tThe following fields are mandatory: "
                  "Resolution code, Close notes"}, "status": "failure"}
    half = http.patch(url(sn, f"incident/{sys_id}"),
                      json={"state": "6", "close_code": "Solution provided"})
    assert half.status_code == 403 and half.json()["error"]["detail"].endswith(": Close notes")
    assert sn.records("incident")[0]["state"] == "1"  # nothing was written
    resolved = http.patch(url(sn, f"incident/{sys_id}"), json={
        "state": "6", "close_code": "Solution provided", "close_notes": "done"}).json()["result"]
    assert resolved["state"] == resolved["incident_state"] == "6"
    assert resolved["resolved_at"] and resolved["resolved_by"]["value"]
    assert resolved["active"] == "true"
    closed = http.patch(url(sn, f"incident/{sys_id}"), json={"state": "7"}).json()["result"]
    assert closed["active"] == "false" and closed["closed_at"]
    with_post = http.post(url(sn, "incident"), json={"state": "7"})
    assert with_post.status_code == 403
    change = create(http, sn, "change_request")["sys_id"]
    assert http.patch(url(sn, f"change_request/{change}"), json={"state": "3"}
                      ).status_code == 403
    ok = http.patch(url(sn, f"change_request/{change}"), json={
        "state": "3", "close_code": "successful", "close_notes": "ok"})
    assert ok.status_code == 200 and ok.json()["result"]["active"] == "false"


# -- transport errors and authentication -----------------------------------------------------

def test_transport_errors(sn: ServiceNowEmulator, http: requests.Session) -> None:
    unknown = http.get(url(sn, "nope"))
    assert unknown.status_code == 400
    assert unknown.json() == {"error": {"message": "Invalid table nope", "detail": None},
                              "status": "failure"}
    bad_json = http.post(url(sn, "incident"), data=b"{oops",
                         headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["message"] == "Exception while reading request"
    assert http.post(url(sn, "incident"), data=b"{}").status_code == 400  # no Content-Type
    assert http.post(url(sn, "incident"), data=b"<x/>",
                     headers={"Content-Type": "application/xml"}).status_code == 415
    assert http.get(url(sn, "incident"), headers={"Accept": "application/xml"}
                    ).status_code == 406
    assert http.post(url(sn, "incident/0123"), json={}).status_code == 405
    batch = http.post(url(sn, "incident"), json=[{"short_description": "a"},
                                                  {"short_description": "b"}])
    assert batch.status_code == 201 and len(sn.records("incident")) == 1
    huge = http.post(url(sn, "incident"), data=b"x" * (10 * 1024 * 1024 + 1),
                     headers={"Content-Type": "application/json"})
    assert huge.status_code == 400


def test_auth_failures(sn: ServiceNowEmulator) -> None:
    for auth in (None, (sn.username, "wrong"), ("nobody", sn.password)):
        response = requests.get(url(sn, "incident"), auth=auth,
                                headers={"Accept": "application/json"}, timeout=10)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="Service-now"'
        assert response.json() == {"error": {
            "message": "User is not authenticated",
            "detail": "Required to provide Auth information"}, "status": "failure"}
    bearer = requests.get(url(sn, "incident"), headers={"Authorization": "Bearer nope"},
                          timeout=10)
    assert bearer.status_code == 401


def test_seeded_user_can_log_in(sn: ServiceNowEmulator) -> None:
    sn.add_user("ferry.bot", "Ferry Bot", password="s3cret")
    response = requests.post(url(sn, "incident"), json={"work_notes": "hi"},
                             auth=("ferry.bot", "s3cret"), timeout=10,
                             headers={"Accept": "application/json"})
    assert response.json()["result"]["sys_created_by"] == "ferry.bot"
    assert response.json()["result"]["opened_by"]["value"]
    assert sn.records("sys_journal_field")[0]["sys_created_by"] == "ferry.bot"


def token(sn: ServiceNowEmulator, **form: str) -> requests.Response:
    data = {"client_id": sn.client_id, "client_secret": sn.client_secret, **form}
    return requests.post(f"{sn.url}/oauth_token.do", data=data, timeout=10)


def test_oauth_password_grant_expiry_and_refresh(sn: ServiceNowEmulator) -> None:
    issued = token(sn, grant_type="password", username=sn.username, password=sn.password)
    assert issued.status_code == 200
    body = issued.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "useraccount"
    assert body["expires_in"] == 1800 and body["refresh_token"]

    def get(access: str) -> requests.Response:
        return requests.get(url(sn, "incident"), timeout=10, headers={
            "Authorization": f"Bearer {access}", "Accept": "application/json"})

    assert get(body["access_token"]).status_code == 200
    sn.advance_clock(1801)
    expired = get(body["access_token"])
    assert expired.status_code == 401
    assert expired.json()["error"]["message"] == "User is not authenticated"
    refreshed = token(sn, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert refreshed.status_code == 200
    assert get(refreshed.json()["access_token"]).status_code == 200
    sn.advance_clock(8_640_000)
    stale = token(sn, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert stale.status_code == 401


def test_oauth_failures(sn: ServiceNowEmulator) -> None:
    denied = {"error_description": "access_denied", "error": "server_error"}
    wrong_user = token(sn, grant_type="password", username=sn.username, password="x")
    assert wrong_user.status_code == 401 and wrong_user.json() == denied
    wrong_client = requests.post(f"{sn.url}/oauth_token.do", timeout=10, data={
        "grant_type": "client_credentials", "client_id": sn.client_id, "client_secret": "x"})
    assert wrong_client.status_code == 401 and wrong_client.json() == denied
    assert token(sn, grant_type="refresh_token", refresh_token="nope").status_code == 401


def test_oauth_client_credentials(sn: ServiceNowEmulator) -> None:
    issued = token(sn, grant_type="client_credentials")
    assert issued.status_code == 200 and "refresh_token" not in issued.json()
    response = requests.post(url(sn, "incident"), json={"short_description": "cc"}, timeout=10,
                             headers={"Authorization": f"Bearer {issued.json()['access_token']}",
                                      "Accept": "application/json"})
    assert response.status_code == 201
    sn.client_credentials = False  # the instance default before enabling the grant type
    assert token(sn, grant_type="client_credentials").status_code == 401


# -- rate limits and fault injection ---------------------------------------------------------

def test_rate_limit(sn: ServiceNowEmulator, http: requests.Session) -> None:
    sn.rate_limit(3, per_seconds=60)
    for _ in range(3):
        ok = http.get(url(sn, "incident"))
        assert ok.status_code == 200 and ok.headers["X-RateLimit-Limit"] == "3"
        assert "X-RateLimit-Remaining" not in ok.headers
    limited = http.get(url(sn, "incident"))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-RateLimit-Rule"] and limited.headers["X-RateLimit-Reset"]
    assert limited.json() == {"error": {
        "message": "Rate limit exceeded",
        "detail": "Rate limit of 3 requests per 60 seconds for Table API exceeded"},
        "status": "failure"}
    sn.advance_clock(61)
    assert http.get(url(sn, "incident")).status_code == 200
    sn.rate_limit(None)
    assert all(http.get(url(sn, "incident")).status_code == 200 for _ in range(5))


def test_fail_next(sn: ServiceNowEmulator, http: requests.Session) -> None:
    sn.fail_next(2)
    first, second = http.get(url(sn, "incident")), http.get(url(sn, "incident"))
    assert first.status_code == second.status_code == 503
    assert first.json()["status"] == "failure"
    assert http.get(url(sn, "incident")).status_code == 200
    sn.fail_next(1, status=429, retry_after=2)
    throttled = http.post(url(sn, "incident"), json={})
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
    assert sn.records("incident") == []  # a failed request commits nothing
    assert [e.status for e in sn.request_log] == [503, 503, 200, 429]


def test_delay(sn: ServiceNowEmulator, http: requests.Session) -> None:
    sn.delay(0.4, n=1)
    started = time.monotonic()
    assert http.get(url(sn, "incident")).status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    http.get(url(sn, "incident"))
    assert time.monotonic() - started < 0.4
    sn.delay(5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(url(sn, "incident"), timeout=0.3)
    sn.delay(0)


def test_drop_after_commit(sn: ServiceNowEmulator, http: requests.Session) -> None:
    sn.drop_after_commit(1)
    with pytest.raises(requests.exceptions.ConnectionError):
        http.post(url(sn, "incident"), json={"correlation_id": "ff:t9:user"})
    [record] = sn.records("incident")  # the outcome is unknown to the client, yet committed
    assert record["correlation_id"] == "ff:t9:user"
    assert sn.request_log[-1] == ("POST", f"{TABLE}/incident", 0)
    found = http.get(url(sn, "incident"), params={
        "sysparm_query": "correlation_id=ff:t9:user", "sysparm_fields": "sys_id"})
    assert found.json()["result"] == [{"sys_id": record["sys_id"]}]
    assert http.post(url(sn, "incident"), json={}).status_code == 201  # only n POSTs drop


def test_stop_leaves_no_threads_with_open_keep_alive() -> None:
    before = set(threading.enumerate())
    emulator = ServiceNowEmulator().start()
    session = requests.Session()
    response = session.get(url(emulator, "incident"), auth=(emulator.username,
                                                            emulator.password))
    assert response.status_code == 200
    emulator.delay(30)
    outcome: list[BaseException] = []

    def held() -> None:
        try:
            requests.get(url(emulator, "incident"), timeout=10)
        except requests.exceptions.ConnectionError as exc:
            outcome.append(exc)

    stuck = threading.Thread(target=held)
    stuck.start()
    time.sleep(0.2)
    started = time.monotonic()
    emulator.stop()
    stuck.join()
    session.close()
    assert time.monotonic() - started < 5
    assert len(outcome) == 1  # the held request is cut off, not answered
    assert set(threading.enumerate()) <= before


# -- pysnc, ServiceNow's own client ----------------------------------------------------------

def test_pysnc_create_and_query(pki: TestPki, monkeypatch: pytest.MonkeyPatch) -> None:
    pysnc = pytest.importorskip("pysnc")
    # pysnc merges the environment per request, so REQUESTS_CA_BUNDLE beats its verify=
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca_file))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with ServiceNowEmulator(tls=(pki.cert_file, pki.key_file)) as emulator:
        assert emulator.url.startswith("https://")
        group = emulator.add_group("Ferry Ops")
        client = pysnc.ServiceNowClient(emulator.url, (emulator.username, emulator.password),
                                        verify=str(pki.ca_file))
        try:
            gr = client.GlideRecord("incident")
            gr.add_query("correlation_id", "ff:t1:user")
            gr.limit = 1
            gr.query()
            assert not gr.next()
            gr.initialize()
            gr.short_description = "Transfer t1 failed"
            gr.urgency = "2"
            gr.impact = "2"
            gr.correlation_id = "ff:t1:user"
            gr.assignment_group = group
            sys_id = gr.insert()
            assert sys_id

            found = client.GlideRecord("incident")
            found.add_query("correlation_id", "ff:t1:user")
            found.query()
            assert len(found) == 1 and found.next()
            assert found.get_value("number") == "INC0010001"
            assert found.get_value("priority") == "3"
            assert found.get_display_value("assignment_group") == "Ferry Ops"
            found.work_notes = "retrying [ff:t1:1]"
            found.update()
            assert emulator.records("sys_journal_field")[0]["value"] == "retrying [ff:t1:1]"

            again = client.GlideRecord("incident")
            assert again.get(sys_id) and again.get_value("correlation_id") == "ff:t1:user"
            assert not client.GlideRecord("incident").get("0" * 32)
        finally:
            client.session.close()

        flow = pysnc.ServiceNowClientCredentialsFlow(emulator.client_id, emulator.client_secret)
        oauth_client = pysnc.ServiceNowClient(emulator.url, flow, verify=str(pki.ca_file))
        try:
            gr = oauth_client.GlideRecord("incident")
            gr.add_encoded_query("numberSTARTSWITHINC^ORDERBYnumber")
            gr.query()
            assert [r.get_value("sys_id") for r in gr] == [sys_id]
        finally:
            oauth_client.session.close()
        assert ("POST", "/oauth_token.do", 200) in emulator.request_log


def test_chunked_body_and_basic_client_auth_on_token_endpoint(
        sn: ServiceNowEmulator, http: requests.Session) -> None:
    chunked = http.post(url(sn, "incident"), data=iter([b'{"short_', b'description": "c"}']),
                        headers={"Content-Type": "application/json"})
    assert chunked.status_code == 201 and chunked.json()["result"]["short_description"] == "c"
    issued = requests.post(f"{sn.url}/oauth_token.do", auth=(sn.client_id, sn.client_secret),
                           data={"grant_type": "client_credentials"}, timeout=10)
    assert issued.status_code == 200 and issued.json()["access_token"]
