"""Unit tests of ``fileferry.paths``: NAME:PATH, confinement to the root, object placement."""

from __future__ import annotations

import pytest

from fileferry.errors import PathOutsideRoot, UsageError
from fileferry.paths import (
    is_within,
    normalise,
    relative_key,
    split_destination,
    target_dir,
    target_path,
)

ROOT = "/srv/sftp/acme/inbound"

# -- NAME:PATH ------------------------------------------------------------------------------


@pytest.mark.parametrize(("arg", "expected"), [
    ("acme:incoming/", ("acme", "incoming/")),
    ("acme:", ("acme", "")),
    ("acme:/abs/dir", ("acme", "/abs/dir")),
    ("acme:dir:with:colons", ("acme", "dir:with:colons")),
    ("acme-eu.2:Übersicht März", ("acme-eu.2", "Übersicht März")),
])
def test_split_destination(arg: str, expected: tuple[str, str]) -> None:
    assert split_destination(arg) == expected


@pytest.mark.parametrize("arg", ["acme", "", ":incoming/", "s3/acme:x", "acme/incoming"])
def test_split_destination_refuses(arg: str) -> None:
    with pytest.raises(UsageError, match="NAME:PATH"):
        split_destination(arg)


# -- normalising ----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "expected"), [
    ("//srv//sftp///x/", "/srv/sftp/x"),
    ("//", "/"),
    ("/a/./b/../c", "/a/c"),
    ("a//b/", "a/b"),
    ("/..", "/"),
])
def test_normalise(path: str, expected: str) -> None:
    assert normalise(path) == expected


@pytest.mark.parametrize(("root", "path", "inside"), [
    (ROOT, ROOT, True),
    (ROOT, ROOT + "/x", True),
    (ROOT, ROOT + "/", True),
    (ROOT, "/srv/sftp/acme/inboundX", False),
    (ROOT, "/srv/sftp/acme", False),
    (ROOT, ROOT + "/../other", False),
    ("/", "/etc/passwd", True),
    ("//srv//sftp/acme/inbound/", "/srv/sftp/acme/inbound/x", True),
])
def test_is_within(root: str, path: str, inside: bool) -> None:
    assert is_within(root, path) is inside


# -- target_dir -----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "expected"), [
    ("", ROOT),
    (".", ROOT),
    ("incoming", ROOT + "/incoming"),
    ("incoming/", ROOT + "/incoming"),
    ("a/b/../c/", ROOT + "/a/c"),
    ("a/..", ROOT),
    (ROOT, ROOT),
    (ROOT + "/x/y/", ROOT + "/x/y"),
    ("//srv//sftp/acme/inbound//x", ROOT + "/x"),
    ("in//daily///", ROOT + "/in/daily"),
    ("Übersicht März/", ROOT + "/Übersicht März"),
])
def test_target_dir_inside_root(path: str, expected: str) -> None:
    assert target_dir(ROOT, path) == expected


@pytest.mark.parametrize("path", [
    "..",
    "../",
    "../../etc",
    "a/../../x",
    "incoming/../../../etc/passwd",
    "/etc",
    "/srv/sftp/acme",
    "/srv/sftp/acme/inboundX",
    ROOT + "/../other",
    "x\x00y",
])
def test_target_dir_outside_root(path: str) -> None:
    with pytest.raises(PathOutsideRoot):
        target_dir(ROOT, path, "acme")


def test_outside_root_message_names_destination_and_root() -> None:
    with pytest.raises(PathOutsideRoot) as info:
        target_dir(ROOT, "../../etc", "acme")
    message = str(info.value)
    assert "acme:../../etc" in message
    assert ROOT in message


def test_root_with_trailing_and_double_slashes() -> None:
    assert target_dir("//srv/sftp//acme/inbound/", "x") == ROOT + "/x"


@pytest.mark.parametrize(("path", "expected"), [
    ("/etc", "/etc"),
    ("../..", "/"),
    ("", "/"),
    ("home/x", "/home/x"),
    ("//tmp//a", "/tmp/a"),
])
def test_root_slash_allows_everything(path: str, expected: str) -> None:
    assert target_dir("/", path) == expected


# -- relative_key and target_path ------------------------------------------------------------


@pytest.mark.parametrize(("key", "prefix", "expected"), [
    ("data/2026/report.csv", "data/", "2026/report.csv"),
    ("data/report.csv", "data/", "report.csv"),
    ("report.csv", "", "report.csv"),
    ("data/2026/report.csv", None, "report.csv"),
    ("report.csv", None, "report.csv"),
    ("data/Übersicht März.txt", "data/", "Übersicht März.txt"),
])
def test_relative_key(key: str, prefix: str | None, expected: str) -> None:
    assert relative_key(key, prefix) == expected


@pytest.mark.parametrize(("relative", "expected"), [
    ("report.csv", ROOT + "/in/report.csv"),
    ("2026/11/report.csv", ROOT + "/in/2026/11/report.csv"),
    ("a/../b.csv", ROOT + "/in/b.csv"),
    ("/leading/slash.csv", ROOT + "/in/leading/slash.csv"),
    ("a//b.csv", ROOT + "/in/a/b.csv"),
    ("Übersicht März.txt", ROOT + "/in/Übersicht März.txt"),
    ("with space/and ü/日本語.csv", ROOT + "/in/with space/and ü/日本語.csv"),
    (".hidden", ROOT + "/in/.hidden"),
])
def test_target_path_inside(relative: str, expected: str) -> None:
    assert target_path(ROOT, ROOT + "/in", relative) == expected


def test_key_escaping_via_dotdot_refused() -> None:
    relative = relative_key("data/../../etc/passwd", "data/")
    with pytest.raises(PathOutsideRoot):
        target_path(ROOT, ROOT, relative)
    with pytest.raises(PathOutsideRoot):
        target_path(ROOT, ROOT + "/in", relative)


@pytest.mark.parametrize("relative", [
    "../x.csv",
    "../../../../../../etc/passwd",
    "a/../../x.csv",
    "..",
    "",
    "dir/",
    "nul\x00.csv",
])
def test_target_path_refuses(relative: str) -> None:
    with pytest.raises(PathOutsideRoot):
        target_path(ROOT, ROOT + "/in", relative)


def test_target_path_under_root_slash() -> None:
    assert target_path("/", "/", "etc/x") == "/etc/x"
    with pytest.raises(PathOutsideRoot):
        target_path("/", "/data", "../etc/x")
