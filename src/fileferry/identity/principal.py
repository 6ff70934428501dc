"""Who is acting: a user id and their groups, from an SSO token or the OS."""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Principal", "local_principal"]


@dataclass(frozen=True, eq=False)
class Principal:
    """Who is acting: the user id, their groups, and where that came from.

    ``source`` is ``sso`` (a verified token), ``os`` (the local user, no SSO) or
    ``token`` (the API's shared ``api.token``: a service credential, no groups).
    ``claims`` are the token's claims; they are never stored or logged.
    """

    user: str
    groups: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)
    source: Literal["sso", "os", "token"] = "sso"


def local_principal(user: str | None = None) -> Principal:
    """The OS user (no SSO): ``user`` names the requester; the groups are the OS user's
    (so a ``--user`` label never borrows another account's groups)."""
    me = pwd.getpwuid(os.getuid())
    names = set()
    for gid in os.getgrouplist(me.pw_name, me.pw_gid):
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return Principal(user=user or me.pw_name, groups=frozenset(names), source="os")
