"""The dashboard in a real headless Chromium (Debian's, driven by Selenium).

Set FILETWIN_SCREENSHOTS=DIR (e.g. docs/img) to save the screenshots the
README shows: the table, a file's timeline, a restore's confirmation.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import DashDaemon
from tests.helpers import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason="needs Debian's chromium and chromium-driver (scripts/test installs them)",
)


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    profile = tempfile.mkdtemp(prefix="filetwin-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,860",
        f"--user-data-dir={profile}",
        # DNS rebinding, for real: evil.test resolves to 127.0.0.1 in this browser.
        "--host-resolver-rules=MAP evil.test 127.0.0.1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(driver: Any, name: str) -> None:
    """Save a screenshot when FILETWIN_SCREENSHOTS names a directory."""
    where = os.environ.get("FILETWIN_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(where) / f"dashboard-{name}.png"))


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def test_login_restore_and_see_the_event(dash: DashDaemon, files: Path, browser: Any) -> None:
    doc = files / "report.txt"
    doc.write_bytes(b"first draft\n")
    dash.client.add(doc)
    other = files / "notes.txt"
    other.write_bytes(b"notes\n")
    dash.client.add(other, backup="on-write")
    dash.client.mark(other, "before-edit")
    dash.client.notify_close(other, ok=False)
    doc.write_bytes(b"second draft\n")
    dash.client.backup(doc)
    first = dash.client.history(doc)[0]
    assert first["cause"] == "initial"

    # Without the token: refused, told how to get in.
    browser.get(f"{dash.base}/")
    assert "needs its token" in browser.page_source
    assert not css(browser, "table.entries")

    # Log in with the URL `filetwin dashboard` prints: the token leaves the address bar.
    url = dash.cli("--config", str(dash.config_path), "dashboard").stdout.strip()
    browser.get(url)
    assert browser.current_url == f"{dash.base}/"
    cookie = browser.get_cookie(f"filetwin_token_{dash.port}")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    rows = wait_until(lambda: css(browser, "#rows tr[data-path]"), what="the table's rows")
    assert sorted(r.get_attribute("data-path") for r in rows) == sorted([str(doc), str(other)])
    wait_until(lambda: css(browser, "#live.on"), what="the live event stream to connect")
    shot(browser, "table")

    # The on-write file's timeline: its mark and its failed close, flagged.
    browser.get(f"{dash.base}/file?path={other}")
    failed = css(browser, "ol.timeline li.failed")
    assert len(failed) == 1 and "close FAILED" in failed[0].text
    assert "mark before-edit" in css(browser, "ol.timeline li.mark")[0].text
    shot(browser, "journal")

    # Restore the first version of the document in place, through the confirmation.
    browser.get(f"{dash.base}/")
    next(a for a in css(browser, "#rows a") if a.text == str(doc)).click()
    wait_until(lambda: css(browser, "ol.timeline"), what="the file's timeline")
    shot(browser, "file")
    version = css(browser, f'li.version[data-version="{first["id"]}"] a.restore')[0]
    version.click()
    wait_until(lambda: css(browser, "div.confirm"), what="the confirmation")
    assert "Kept aside" in css(browser, "div.confirm")[0].text
    shot(browser, "confirm")
    assert doc.read_bytes() == b"second draft\n"
    css(browser, "div.confirm button.danger")[0].click()
    flash = wait_until(lambda: css(browser, "p.flash.ok"), what="the restore's message")
    assert f"restored version {first['id']}" in flash[0].text
    assert doc.read_bytes() == b"first draft\n"
    kept = [v for v in dash.client.history(doc) if v["cause"] == "restore"]
    assert len(kept) == 1 and kept[0]["id"] in flash[0].text
    wait_until(lambda: css(browser, '#events li[data-kind="restore"]'), what="the restore event")

    # Live: an event that happens while the page is open appears without a reload.
    wait_until(lambda: css(browser, "#live.on"), what="the live event stream to connect")
    page = browser.find_element("tag name", "html")
    dash.client.pause(doc)
    item = wait_until(
        lambda: css(browser, '#events li[data-kind="pause"]'), what="the pause event, live"
    )
    assert str(doc) in item[0].text
    assert browser.find_element("tag name", "html") == page  # the same page, not reloaded

    # Resume from the page (shown after a reload): a POST with its CSRF token.
    browser.refresh()
    css(browser, 'form[action="/action/resume"] button')[0].click()
    wait_until(lambda: css(browser, "p.flash.ok"), what="the resume's message")
    assert dash.client.status(doc)["state"] == "watching"


def test_dns_rebinding_refused_in_the_browser(dash: DashDaemon, browser: Any) -> None:
    """A site whose name rebinds to 127.0.0.1 gets 403, even holding the token."""
    browser.get(f"http://evil.test:{dash.port}/?token={dash.token}")
    assert "answers only to" in browser.page_source
    assert browser.get_cookie(f"filetwin_token_{dash.port}") is None
    browser.get(f"{dash.base}/?token={dash.token}")  # logged in at the real origin
    browser.get(f"http://evil.test:{dash.port}/")
    assert "answers only to" in browser.page_source
    assert not css(browser, "table.entries")
