"""The dashboard with SSO in headless chromium: visiting / goes to the sandbox provider's
sign-in form, back to the dashboard signed in (the session is an HttpOnly cookie), a
transfer started there waits for approval, and a second user in another browser
context approves it and sees it through. Screenshots go under the pytest basetemp."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import SsoEnv
from tests.api.test_dashboard import ARGS, CHROMIUM
from tests.helpers import seed


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _sign_in(page: Any, env: SsoEnv, path: str, user: str) -> None:
    """Open ``path``; the dashboard sends us to the provider; sign in there."""
    page.goto(f"{env.url}{path}")
    page.wait_for_url(f"{env.idp.issuer}/authorize*")
    page.fill("#username", user)
    page.fill("#password", f"{user}-pw")
    page.click("#login")
    page.wait_for_url(f"{env.url}/**")
    page.wait_for_selector(f"#whoami:has-text('{user}')")


def test_sign_in_start_and_approve_as_another_user(browser: Any, sso_env: SsoEnv, s3: Any,
                                                   tmp_path_factory: pytest.TempPathFactory
                                                   ) -> None:
    sub = "reviewed/ui-" + secrets.token_hex(4)
    seed(s3, sso_env.bucket, {f"{sub}/q4.csv": b"quarter,total\n4,1000\n"})
    shots = tmp_path_factory.getbasetemp() / "screenshots"
    shots.mkdir(exist_ok=True)
    errors: list[str] = []

    alice = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    alice.on("pageerror", lambda exc: errors.append(str(exc)))
    _sign_in(alice, sso_env, "/", "alice")
    cookies = {c["name"]: c for c in alice.context.cookies()}
    assert cookies["ff_session"]["httpOnly"] and cookies["ff_session"]["sameSite"] == "Lax"
    assert alice.evaluate("document.cookie") == "", "the session is not readable by scripts"
    alice.wait_for_selector("#destination option[value=t]", state="attached")
    assert alice.locator("#requester-field").is_hidden()
    alice.fill("#sources", f"s3://{sso_env.bucket}/{sub}/q4.csv")
    alice.select_option("#destination", "t")
    alice.fill("#path", f"{sub}/")
    alice.click("#new-transfer button[type=submit]")
    started = alice.wait_for_selector("#form-ok:has-text('Started')").inner_text()
    tid = re.search(r"tr-[0-9a-f]{16}", started).group(0)  # type: ignore[union-attr]
    row = alice.locator(f"#transfers tr[data-id='{tid}']")
    row.locator(".status:has-text('PENDING_APPROVAL')").wait_for()
    assert row.locator(".requester").inner_text() == "alice"
    alice.screenshot(path=str(shots / "sso-pending.png"))
    alice.goto(f"{sso_env.url}/#/transfers/{tid}")
    alice.wait_for_selector("#d-approval-text:has-text('finance-approvers')")
    assert alice.locator("#d-approve").is_hidden(), "the requester gets no Approve button"

    bob = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    bob.on("pageerror", lambda exc: errors.append(str(exc)))
    _sign_in(bob, sso_env, f"/#/transfers/{tid}", "bob")
    assert bob.url.endswith(f"/#/transfers/{tid}"), "back where the sign-in started"
    bob.wait_for_selector("#d-approve", state="visible")
    bob.fill("#d-reason", "numbers checked")
    bob.screenshot(path=str(shots / "sso-approve.png"))
    bob.click("#d-approve")
    bob.wait_for_selector("#d-decided:has-text('Approved by bob')")
    bob.wait_for_selector("#d-summary dd:has-text('SUCCEEDED')", timeout=60_000)
    alice.goto(f"{sso_env.url}/#/")
    alice.locator(f"#transfers tr[data-id='{tid}'] .status:has-text('SUCCEEDED')").wait_for()
    alice.screenshot(path=str(shots / "sso-done.png"))
    print(f"screenshots: {shots}")

    alice.click("#logout")
    alice.wait_for_selector("#sso-login-link", state="visible")
    assert "ff_session" not in {c["name"] for c in alice.context.cookies()}
    assert errors == []
