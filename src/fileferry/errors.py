"""FileFerry's one error tree.

Every failure FileFerry reports is one of these classes. The class names are
the Amazon States Language error names used in ``Retry`` and ``Catch``, so the
state machine reads like the code. Library errors (botocore, asyncssh, ...)
are translated at the adapter boundary with ``raise ... from exc``.

``exit_code`` is what the CLI exits with; ``retryable`` says whether trying
again can help (a dropped connection) or not (a wrong password)::

    FileFerryError                      exit 1
    ├── RefusedError                    exit 2   nothing moved; fix the input
    │   ├── LeaseHeld                            another live process runs this execution
    │   ├── UsageError                           bad command line
    │   ├── ConfigError                          invalid or missing configuration
    │   ├── ValidationError                      the request cannot be carried out
    │   │   ├── SourceNotFound                   missing object or empty prefix
    │   │   ├── UnknownDestination               no such destination in the config
    │   │   ├── PathOutsideRoot                  a path escapes the destination root
    │   │   └── TargetExists                     on_conflict: fail and the file exists
    │   ├── HostKeyError
    │   │   ├── HostKeyUnknown                   no pinned key for the host
    │   │   └── HostKeyMismatch                  the server's key is not the pinned one
    │   ├── CertificateError                     TLS certificate untrusted or for another name
    │   ├── InsecureTransport                    plain FTP without allow_insecure
    │   ├── AuthenticationFailed                 wrong password or key
    │   │   └── InvalidToken                     an SSO token was refused (names why)
    │   ├── PermissionDenied                     the account may not read/write there
    │   ├── LeaseHeld                            another live process runs the execution
    │   ├── NotAuthorized                        the user may not do this (HTTP 403)
    │   │   └── PolicyDenied                     no policy allows this transfer
    │   ├── SessionExpired                       the transfer session ended or expired
    │   ├── ApprovalRejected                     an approver rejected the transfer
    │   └── ApprovalTimedOut                     nobody decided before the timeout
    ├── Cancelled                       exit 1   a cancel stopped the step while it ran
    └── TransferFailed                  exit 1   something went wrong while moving
        ├── EndpointUnavailable         retry    unreachable, reset, timed out
        ├── ChecksumMismatch            retry    bytes differ from what S3 holds
        ├── VerificationFailed          retry    the destination's copy differs
        ├── SourceError                 retry    S3 failed while reading
        └── DestinationError                     the server refused an operation
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ApprovalRejected",
    "ApprovalTimedOut",
    "AuthenticationFailed",
    "Cancelled",
    "CertificateError",
    "ChecksumMismatch",
    "ConfigError",
    "DestinationError",
    "EndpointUnavailable",
    "FileFerryError",
    "HostKeyError",
    "HostKeyMismatch",
    "HostKeyUnknown",
    "InsecureTransport",
    "InvalidToken",
    "LeaseHeld",
    "NotAuthorized",
    "PathOutsideRoot",
    "PermissionDenied",
    "PolicyDenied",
    "RefusedError",
    "SessionExpired",
    "SourceError",
    "SourceNotFound",
    "TargetExists",
    "TransferFailed",
    "UnknownDestination",
    "UsageError",
    "ValidationError",
    "VerificationFailed",
    "all_error_classes",
]


class FileFerryError(Exception):
    """The root of every error FileFerry raises on purpose."""

    exit_code: ClassVar[int] = 1
    retryable: ClassVar[bool] = False

    @property
    def name(self) -> str:
        """The ASL error name (the class name)."""
        return type(self).__name__

    def to_dict(self) -> dict[str, str]:
        return {"type": self.name, "message": str(self)}


class RefusedError(FileFerryError):
    """Refused before anything moved: the request or its setup must change."""

    exit_code = 2


class LeaseHeld(RefusedError):
    """Another live process runs this execution (the workflow runner's lease)."""


class UsageError(RefusedError):
    """The command line is wrong."""


class ConfigError(RefusedError):
    """The configuration file is missing or invalid."""


class ValidationError(RefusedError):
    """The request is well formed but cannot be carried out."""


class SourceNotFound(ValidationError):
    """A source object does not exist, or a prefix holds no objects."""


class UnknownDestination(ValidationError):
    """The destination name is not in the configuration."""


class PathOutsideRoot(ValidationError):
    """A path would leave the destination's root after normalising."""


class TargetExists(ValidationError):
    """The target file exists and the destination says ``on_conflict: fail``."""


class HostKeyError(RefusedError):
    """The server's host key could not be verified against the pinned one."""


class HostKeyUnknown(HostKeyError):
    """No pinned key for this host: fetch and pin it with ``fileferry hostkey NAME --pin``."""


class HostKeyMismatch(HostKeyError):
    """The server presented a key other than the pinned one."""


class CertificateError(RefusedError):
    """The server's TLS certificate is not trusted or names another host."""


class InsecureTransport(RefusedError):
    """A plain-text protocol where the destination does not allow it."""


class AuthenticationFailed(RefusedError):
    """The server rejected the credentials."""


class PermissionDenied(RefusedError):
    """The account may not read or write where it was asked to."""


class InvalidToken(AuthenticationFailed):
    """An SSO token was refused; ``reason`` says why (expired, wrong audience, ...).

    The message never contains the token itself.
    """

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason

    @classmethod
    def because(cls, reason: str, detail: str = "") -> InvalidToken:
        """``token refused: REASON (DETAIL)``."""
        return cls(f"token refused: {reason}" + (f" ({detail})" if detail else ""),
                   reason=reason)


class NotAuthorized(RefusedError):
    """The user is known but may not do this (approve their own transfer, say)."""


class PolicyDenied(NotAuthorized):
    """No policy allows this user to send these sources to this destination now."""


class SessionExpired(RefusedError):
    """The transfer session was used after it expired or was closed at logout.

    ``closed`` is True when it was ended on purpose (logout, failure, cancel): such a
    session is never replaced by a new one.
    """

    def __init__(self, message: str, *, closed: bool = False) -> None:
        super().__init__(message)
        self.closed = closed


class ApprovalRejected(RefusedError):
    """An approver rejected the transfer."""


class ApprovalTimedOut(RefusedError):
    """Nobody approved or rejected the transfer before the policy's timeout."""


class Cancelled(FileFerryError):
    """``fileferry cancel`` stopped a step while it ran (on Lambda: the watcher in
    ``aws.cancel`` saw the transfer's ``cancel_requested`` flag)."""


class TransferFailed(FileFerryError):
    """Something went wrong while moving bytes."""


class EndpointUnavailable(TransferFailed):
    """A server could not be reached, or the connection dropped or timed out."""

    retryable = True


class ChecksumMismatch(TransferFailed):
    """The streamed bytes do not match a checksum the source holds."""

    retryable = True


class VerificationFailed(TransferFailed):
    """The file at the destination differs from the bytes sent."""

    retryable = True


class SourceError(TransferFailed):
    """The source failed while the object was being read."""

    retryable = True


class DestinationError(TransferFailed):
    """The destination refused an operation (disk full, rename failed, ...)."""


def all_error_classes() -> list[type[FileFerryError]]:
    """Every class in the tree, root first (for docs, ASL and tests)."""
    out: list[type[FileFerryError]] = []
    todo: list[type[FileFerryError]] = [FileFerryError]
    while todo:
        cls = todo.pop(0)
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out
