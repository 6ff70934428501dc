"""The dashboard with SSO in headless chromium: visiting / goes to the sandbox provider's
sign-in form, back to the dashboard signed in (the session is an HttpOnly cookie), a
transfer started there waits for approval, a second user in another browser context
finds it under "Awaiting your approval", approves it and sees it through, and a third
user (outside the approval group) does not see it at all. Screenshots go under the
pytest basetemp."""

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
    assert alice.locator("#d-cancel").is_visible(), "the requester may cancel it"

    bob = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    bob.on("pageerror", lambda exc: errors.append(str(exc)))
    _sign_in(bob, sso_env, f"/#/transfers/{tid}", "bob")
    assert bob.url.endswith(f"/#/transfers/{tid}"), "back where the sign-in started"
    bob.wait_for_selector("#d-approve", state="visible")
    _find_awaiting(bob, sso_env, tid)
    bob.screenshot(path=str(shots / "sso-awaiting.png"))
    bob.click(f"#awaiting tr[data-id='{tid}'] a")
    bob.wait_for_selector("#d-approve", state="visible")
    assert bob.url.endswith(f"/#/transfers/{tid}")
    assert bob.locator("#d-cancel").is_hidden(), "an approver does not cancel it"
    bob.fill("#d-reason", "numbers checked")
    bob.screenshot(path=str(shots / "sso-approve.png"))
    bob.click("#d-approve")
    bob.wait_for_selector("#d-decided:has-text('Approved by bob')")
    _not_shown_to(browser, sso_env, "carol", tid, errors)
    bob.wait_for_selector("#d-summary dd:has-text('SUCCEEDED')", timeout=60_000)
    alice.goto(f"{sso_env.url}/#/")
    alice.locator(f"#transfers tr[data-id='{tid}'] .status:has-text('SUCCEEDED')").wait_for()
    alice.screenshot(path=str(shots / "sso-done.png"))
    print(f"screenshots: {shots}")

    alice.click("#logout")
    alice.wait_for_selector("#sso-login-link", state="visible")
    assert "ff_session" not in {c["name"] for c in alice.context.cookies()}
    assert errors == []


def _find_awaiting(page: Any, env: SsoEnv, tid: str) -> None:
    """On the list, ``tid`` is under "Awaiting your approval" (and not in the list of
    the user's own transfers)."""
    page.goto(f"{env.url}/#/")
    row = page.locator(f"#awaiting tr[data-id='{tid}']")
    row.wait_for()
    assert row.locator(".requester").inner_text() == "alice"
    assert row.locator(".group").inner_text() == "finance-approvers"
    assert page.locator("#transfers-title").inner_text() == "Your transfers"
    assert page.locator(f"#transfers tr[data-id='{tid}']").count() == 0


def _not_shown_to(browser: Any, env: SsoEnv, user: str, tid: str, errors: list[str]) -> None:
    """``user`` (outside the approval group) sees ``tid`` nowhere: not awaiting, not in
    the list, and its page says there is no such transfer."""
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _sign_in(page, env, "/", user)
    page.wait_for_selector("#transfers-title:has-text('Your transfers')")
    page.wait_for_selector("#live:text-is('live')")  # (no wait_for_function: the CSP)
    page.wait_for_timeout(1500)  # a refresh of the awaiting list came and went
    assert page.locator("#awaiting").is_hidden()
    assert page.locator(f"[data-id='{tid}']").count() == 0
    page.goto(f"{env.url}/#/transfers/{tid}")
    page.wait_for_selector(f"#d-error:has-text('no transfer {tid}')")
    assert page.locator("#d-approval").is_hidden()
    page.context.close()
