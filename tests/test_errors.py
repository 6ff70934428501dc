"""The error tree matches its documentation; library errors map into it at the adapters."""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncssh
import botocore.exceptions
import pytest

from fileferry import errors
from fileferry.endpoints.s3 import map_s3_error
from fileferry.endpoints.sftp import map_sftp_error
from fileferry.errors import (
    AuthenticationFailed,
    ConfigError,
    DestinationError,
    EndpointUnavailable,
    FileFerryError,
    PermissionDenied,
    RefusedError,
    SourceError,
    SourceNotFound,
    TransferFailed,
    all_error_classes,
)

CLASSES = all_error_classes()
_TREE_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w+)(?P<rest>.*)$")


@dataclass(frozen=True)
class Documented:
    """One line of the docstring's tree."""

    name: str
    parent: str | None
    exit_code: int | None
    retry: bool


def documented_tree() -> dict[str, Documented]:
    """Parse the tree in the errors module docstring (4 columns per level)."""
    doc = errors.__doc__ or ""
    lines = doc.split("::", 1)[1].splitlines()
    out: dict[str, Documented] = {}
    stack: list[str] = []
    base: int | None = None
    for line in lines:
        match = _TREE_LINE.match(line)
        if not match:
            continue
        column = len(match["indent"])
        base = column if base is None else base
        depth, remainder = divmod(column - base, 4)
        assert remainder == 0, f"misaligned tree line: {line!r}"
        del stack[depth:]
        words = match["rest"].split()
        exit_match = re.search(r"\bexit (\d)\b", match["rest"])
        out[match["name"]] = Documented(
            name=match["name"], parent=stack[-1] if stack else None,
            exit_code=int(exit_match[1]) if exit_match else None,
            retry=bool(words) and words[0] == "retry")
        stack.append(match["name"])
    return out


TREE = documented_tree()


def test_tree_parsed() -> None:
    assert "FileFerryError" in TREE
    assert TREE["FileFerryError"].parent is None
    assert len(TREE) >= 10


def test_root_first_and_all_are_fileferry_errors() -> None:
    assert CLASSES[0] is FileFerryError
    for cls in CLASSES:
        assert issubclass(cls, FileFerryError)
        assert issubclass(cls, Exception)


def test_names_unique() -> None:
    names = [cls.__name__ for cls in CLASSES]
    assert len(names) == len(set(names)), names


def test_every_exported_error_is_in_the_tree() -> None:
    exported = {n for n in errors.__all__ if n != "all_error_classes"}
    assert exported == {cls.__name__ for cls in CLASSES}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_exit_code(cls: type[FileFerryError]) -> None:
    assert cls.exit_code in {1, 2}
    if issubclass(cls, RefusedError):
        assert cls.exit_code == 2
    else:
        assert cls.exit_code == 1
    if issubclass(cls, TransferFailed):
        assert cls.exit_code == 1


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_documented_in_module_docstring(cls: type[FileFerryError]) -> None:
    assert cls.__name__ in TREE, f"{cls.__name__} is missing from the errors docstring tree"
    doc = TREE[cls.__name__]
    parent = cls.__bases__[0]
    expected_parent = None if cls is FileFerryError else parent.__name__
    assert doc.parent == expected_parent, (
        f"the docstring puts {cls.__name__} under {doc.parent}, the code under {expected_parent}")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_retryable_as_documented(cls: type[FileFerryError]) -> None:
    assert cls.retryable is TREE[cls.__name__].retry
    if issubclass(cls, RefusedError):
        assert cls.retryable is False


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_documented_exit_codes(cls: type[FileFerryError]) -> None:
    documented = TREE[cls.__name__].exit_code
    if documented is not None:
        assert cls.exit_code == documented


def test_every_tree_entry_is_a_class() -> None:
    assert set(TREE) == {cls.__name__ for cls in CLASSES}


def test_expected_retryable_set() -> None:
    retryable = {cls.__name__ for cls in CLASSES if cls.retryable}
    assert retryable == {"EndpointUnavailable", "ChecksumMismatch", "VerificationFailed",
                         "SourceError"}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_to_dict(cls: type[FileFerryError]) -> None:
    exc = cls("what happened")
    assert exc.name == cls.__name__
    assert exc.to_dict() == {"type": cls.__name__, "message": "what happened"}


# -- SFTP mapping -------------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "expected"), [
    (asyncssh.PermissionDenied("Permission denied"), AuthenticationFailed),
    (asyncssh.SFTPPermissionDenied("Permission denied"), PermissionDenied),
    (asyncssh.ConnectionLost("Connection lost"), EndpointUnavailable),
    (asyncssh.SFTPConnectionLost("Connection lost"), EndpointUnavailable),
    (ConnectionRefusedError(111, "Connection refused"), EndpointUnavailable),
    (ConnectionResetError(104, "Connection reset by peer"), EndpointUnavailable),
    (TimeoutError(), EndpointUnavailable),
    (asyncssh.SFTPFailure("No space left on device"), DestinationError),
    (asyncssh.SFTPNoSuchFile("No such file"), DestinationError),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.__name__)
def test_map_sftp_error(exc: Exception, expected: type[FileFerryError]) -> None:
    mapped = map_sftp_error(exc, "writing /in/x.csv")
    assert type(mapped) is expected
    assert "writing /in/x.csv" in str(mapped)


def test_map_sftp_error_keeps_fileferry_errors() -> None:
    original = SourceNotFound("gone")
    assert map_sftp_error(original, "x") is original


def test_map_sftp_timeout_is_retryable_auth_is_not() -> None:
    assert map_sftp_error(TimeoutError(), "x").retryable is True
    assert map_sftp_error(asyncssh.PermissionDenied("no"), "x").retryable is False


# -- S3 mapping ---------------------------------------------------------------------------


def client_error(code: str, operation: str = "GetObject") -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": f"{code} happened"}}, operation)


@pytest.mark.parametrize(("code", "expected"), [
    ("NoSuchKey", SourceNotFound),
    ("NoSuchBucket", SourceNotFound),
    ("404", SourceNotFound),
    ("AccessDenied", PermissionDenied),
    ("403", PermissionDenied),
    ("SlowDown", EndpointUnavailable),
    ("InternalError", EndpointUnavailable),
    ("SomethingNew", SourceError),
])
def test_map_s3_client_error(code: str, expected: type[FileFerryError]) -> None:
    mapped = map_s3_error(client_error(code), "s3://b/k")
    assert type(mapped) is expected
    assert "s3://b/k" in str(mapped)


@pytest.mark.parametrize(("exc", "expected"), [
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
     EndpointUnavailable),
    (botocore.exceptions.ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
     EndpointUnavailable),
    (botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
     EndpointUnavailable),
    (botocore.exceptions.NoCredentialsError(), ConfigError),
    (ValueError("boom"), SourceError),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.__name__)
def test_map_s3_other_errors(exc: Exception, expected: type[FileFerryError]) -> None:
    assert type(map_s3_error(exc, "s3://b/k")) is expected


def test_no_credentials_message_says_how_to_fix() -> None:
    message = str(map_s3_error(botocore.exceptions.NoCredentialsError(), "s3://b/k"))
    assert "AWS_ACCESS_KEY_ID" in message
