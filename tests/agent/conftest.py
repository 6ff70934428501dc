"""Servers for the agent's tests: moto's S3 and OpenSSH's sshd (the session's), and a
ServiceNow emulator of their own. Only Bedrock is stubbed (in test_bedrock.py).

``agent_env`` is a configuration with one SFTP destination ``acme`` rooted in a fresh
directory, ServiceNow tickets, and a fresh bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fileferry.agent.conversation import Conversation
from fileferry.agent.launch import InlineLauncher, Launcher
from fileferry.agent.tools import AgentTools
from fileferry.config import Settings
from fileferry.endpoints.s3 import S3Source
from fileferry.identity.principal import Principal
from fileferry.sandbox.servicenow import ServiceNowEmulator
from tests.conftest import MakeConfig, sftp_destination
from tests.servers.sshd import SshdServer

KiB = 1024
ALICE = Principal(user="alice", groups=frozenset({"finance"}), source="sso")
MALLORY = Principal(user="mallory", groups=frozenset({"interns"}), source="sso")


@pytest.fixture(scope="session")
def snow() -> Iterator[ServiceNowEmulator]:
    with ServiceNowEmulator() as emulator:
        emulator.add_group("DataOps")
        for user in ("alice", "mallory"):
            emulator.add_user(user, user.title())
        yield emulator


@dataclass(frozen=True)
class AgentEnv:
    config: Path
    settings: Settings
    bucket: str
    remote: Path
    snow: ServiceNowEmulator


def _config(make_config: MakeConfig, sshd: SshdServer, remote: Path,
            snow: ServiceNowEmulator, **sections: Any) -> Path:
    return make_config(
        {"acme": sftp_destination(sshd, remote)},
        transfer={"default_chunk_size": 128 * KiB},
        servicenow={"instance_url": snow.url, "username": snow.username,
                    "password": snow.password, "default_assignment_group": "DataOps"},
        **sections)


@pytest.fixture
def make_env(make_config: MakeConfig, sshd: SshdServer, remote_dir: Path, bucket: str,
             snow: ServiceNowEmulator) -> Callable[..., AgentEnv]:
    """``make_env(**sections)``: the environment with extra configuration sections."""
    from fileferry.config import load_settings

    def make(**sections: Any) -> AgentEnv:
        path = _config(make_config, sshd, remote_dir, snow, **sections)
        return AgentEnv(path, load_settings(path), bucket, remote_dir, snow)

    return make


@pytest.fixture
def agent_env(make_env: Callable[..., AgentEnv]) -> AgentEnv:
    return make_env()


def tools_for(settings: Settings, principal: Principal = ALICE,
              conversation: Conversation | None = None,
              launcher: Launcher | None = None) -> AgentTools:
    """The tools for one turn, with a fresh conversation unless one is given."""
    conv = conversation or Conversation(session_id="s-1", user=principal.user)
    return AgentTools(settings, principal, conv, launcher or InlineLauncher(settings),
                      S3Source(settings.s3, 128 * KiB))
