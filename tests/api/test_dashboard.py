"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright.

Start a throttled transfer from the form, see its bar at an intermediate value and
then at 100%, open the detail view and find the checksum and the ticket numbers.
Screenshots are saved under the pytest basetemp (the path is printed).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from fileferry.api.server import BackgroundServer
from tests.api.conftest import TOKEN, ApiEnv, MiB
from tests.helpers import seed

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
BAR = "#transfers tr[data-id='{}'] [role=progressbar]"
VALUE_BETWEEN = """([sel, low, high]) => {
  const bar = document.querySelector(sel);
  const v = bar ? Number(bar.getAttribute("aria-valuenow")) : -1;
  return v >= low && v <= high ? v : false;
}"""


@pytest.fixture
def page(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 900})
        finally:
            browser.close()


def test_start_watch_and_inspect_a_transfer(page: Any, api_server: BackgroundServer,
                                            api_env: ApiEnv, s3: Any,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    sub = "ui-" + secrets.token_hex(4)
    body = secrets.token_bytes(2 * MiB)  # 4 s at the slow destination's 512 KiB/s
    seed(s3, api_env.bucket, {f"{sub}/catalogue.bin": body})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    shots = tmp_path_factory.getbasetemp() / "screenshots"
    shots.mkdir(exist_ok=True)

    page.goto(f"{api_server.url}/#token={TOKEN}")
    page.wait_for_selector("#destination option[value=slow]", state="attached")
    assert "token=" not in page.url, "the token is taken out of the address bar"
    page.fill("#sources", f"s3://{api_env.bucket}/{sub}/catalogue.bin")
    page.select_option("#destination", "slow")
    page.fill("#path", f"{sub}/")
    page.fill("#requester", "alice")
    page.click("#new-transfer button[type=submit]")
    started = page.wait_for_selector("#form-ok:has-text('Started')").inner_text()
    tid = re.search(r"tr-[0-9a-f]{16}", started).group(0)  # type: ignore[union-attr]

    bar = BAR.format(tid)
    middle = page.wait_for_function(VALUE_BETWEEN, arg=[bar, 1, 99], timeout=30_000)
    assert 1 <= middle.json_value() <= 99
    page.screenshot(path=str(shots / "dashboard-moving.png"))
    page.wait_for_function(VALUE_BETWEEN, arg=[bar, 100, 100], timeout=60_000)
    row = page.locator(f"#transfers tr[data-id='{tid}']")
    row.locator(".status:has-text('SUCCEEDED')").wait_for()
    assert row.locator(".requester").inner_text() == "alice"
    assert row.locator(".destination").inner_text() == f"slow:{sub}/"
    page.wait_for_selector(f"#transfers tr[data-id='{tid}'] .ticket-user")
    page.screenshot(path=str(shots / "dashboard-list.png"))

    row.locator(f"a[href='#/transfers/{tid}']").click()
    page.wait_for_selector("#detail:not([hidden])")
    sha = page.wait_for_selector("#files .sha256").inner_text()
    assert sha == hashlib.sha256(body).hexdigest()
    assert page.locator("#files .verified-by").inner_text() == "server-md5"
    user = page.locator("#d-summary .ticket-user")
    audit = page.locator("#d-summary .ticket-audit")
    assert re.fullmatch(r"INC\d+", user.inner_text()) and re.fullmatch(r"INC\d+",
                                                                       audit.inner_text())
    assert user.get_attribute("href").startswith(api_env.snow.url)
    assert {r["number"] for r in api_env.snow.records("incident")} >= {
        user.inner_text(), audit.inner_text()}
    assert page.locator("#history tbody tr").count() > 10
    detail = shots / "dashboard-detail.png"
    page.screenshot(path=str(detail), full_page=True)
    print(f"\ndashboard screenshots: {shots}")
    assert not errors, errors
