"""The routes: section: what loads, and what is refused with the key named."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from fileferry.automation.batch import name_files
from fileferry.automation.naming import FILE_FIELDS, check_template, file_fields, render
from fileferry.automation.naming import FileFacts as Facts
from fileferry.automation.objects import S3Object, select
from fileferry.automation.settings import parse_duration
from fileferry.config import parse_settings
from fileferry.errors import ConfigError, ValidationError

DEST = {"acme": {"url": "sftp://u@sftp.example:22/in/"}}


def load(route: dict[str, Any]) -> Any:
    base = {"source": {"bucket": "reports", "prefix": "out/"}, "destination": "acme:daily/"}
    return parse_settings({"destinations": DEST, "routes": {"r": {**base, **route}}}).routes["r"]


def refusal(route: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load(route)
    return str(info.value)


@pytest.mark.parametrize(("route", "says"), [
    ({"options": {"naming": "{stem}{color}"}}, "routes.r.options.naming: unknown field {color}"),
    ({"options": {"naming": "{name!r}"}}, "conversions are not supported"),
    ({"options": {"naming": "../{name}"}}, "without '..'"),
    ({"options": {"naming": "{date:%Y}/"}}, "names a directory"),
    ({"options": {"trigger_file": {"name": "{stem}.done"}}}, "unknown field {stem}"),
    ({"source": {"bucket": "reports", "prefix": "out"}}, "must be a folder ending in '/'"),
    ({"source": {"bucket": "reports", "min_age": "soon"}}, "is not a duration"),
    ({"destination": "nowhere:x/"}, "unknown destination 'nowhere'"),
    ({"triggers": {"schedule": {"cron": "0 25 * * *"}}}, "is not a cron expression"),
    ({"triggers": {"schedule": {"cron": "0 2 * * *", "timezone": "Mars/Base"}}},
     "unknown time zone 'Mars/Base'"),
    ({"options": {"encryption": {"recipient_key": "not a key"}}}, "ASCII-armored public key"),
    ({"options": {"encryption": {}}}, "exactly one of recipient_key"),
    ({"options": {"encryption": {"recipient_key_file": "k.asc",
                                 "recipient_key_secret": "fileferry/destinations/k"}}},
     "recipient_key_secret (Secrets Manager)"),
    ({"options": {"encryption": {"recipient_key_secret": "k", "signing_key_file": "a",
                                 "signing_key_secret": "b"}}}, "at most one of signing_key"),
    ({"options": {"post_delivery": {"archive_prefix": "archive"}}}, "must end in '/'"),
    ({"options": {"colour": 1}}, "routes.r.options.colour: unknown key"),
])
def test_bad_routes_are_refused_naming_the_key(route: dict[str, Any], says: str) -> None:
    assert says in refusal(route)


def test_defaults_and_durations() -> None:
    route = load({})
    assert route.options.name_template == "{path}" and route.options.resend_changed
    assert route.triggers.events is None and route.timezone.key == "UTC"
    key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n...\n-----END PGP PUBLIC KEY BLOCK-----"
    assert load({"options": {"encryption": {"recipient_key": key}}}).options.name_template \
        == "{path}.pgp"
    assert [parse_duration(v) for v in (90, "90s", "15m", "2h", "1d")] == [
        90, 90, 900, 7200, 86400]


def test_templates_render_every_field() -> None:
    fields = {**file_fields(Facts("out/2026/report.tar.gz", "out/")), "seq": 42,
              "transfer_id": "tr-1", "route": "r"}
    when = datetime(2026, 11, 28, 2, 30, tzinfo=UTC)
    assert render("{dir}/{stem}_{date}_{seq:04d}{ext}", fields, when) == \
        "2026/report.tar_20261128_0042.gz"
    assert render("{key}|{path}|{name}|{transfer_id}|{route}|{date:%H%M}", fields, when) == \
        "out/2026/report.tar.gz|2026/report.tar.gz|report.tar.gz|tr-1|r|0230"
    assert check_template("{{literal}}_{name}", FILE_FIELDS)


def test_selection_and_in_batch_collisions() -> None:
    route = load({"source": {"bucket": "reports", "prefix": "out/", "include": ["*.csv"],
                             "exclude": ["*/tmp/*"], "min_age": 60},
                  "options": {"naming": "{name}",
                              "post_delivery": {"archive_prefix": "out/archive/"}}})
    objs = [S3Object(k, 1, "e" + k[-5], t) for k, t in (
        ("out/a.csv", 0), ("out/x/a.csv", 0), ("out/x/tmp/b.csv", 0), ("out/c.txt", 0),
        ("out/archive/a.csv", 0), ("out/new.csv", 990))]
    chosen = select(route, objs, now=1000)
    assert [o.key for o in chosen.eligible] == ["out/a.csv", "out/x/a.csv"]
    assert chosen.excluded == 3 and chosen.ready_at(60) == 1050
    when = datetime(2026, 1, 1, tzinfo=UTC)
    named = name_files("r", route, chosen.eligible, "tr-1", 1, when, "rename")
    assert [f.name for f in named] == ["a.csv", "a-1.csv"]
    with pytest.raises(ValidationError, match=r"add \{path\} or \{seq\}"):
        name_files("r", route, chosen.eligible, "tr-1", 1, when, "fail")
