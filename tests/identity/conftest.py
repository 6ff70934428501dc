"""``sso:`` settings that trust the sandbox provider (the ``oidc`` fixture, tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from fileferry.identity.settings import SsoSettings
from fileferry.sandbox.oidc import OidcProvider


def sso_section(provider: OidcProvider, **extra: Any) -> dict[str, Any]:
    """The ``sso:`` mapping of a configuration file for the sandbox provider."""
    return {"issuer": provider.issuer, "audience": provider.audience, **extra}


@pytest.fixture
def sso(oidc: OidcProvider) -> SsoSettings:
    return SsoSettings.model_validate(sso_section(oidc))
