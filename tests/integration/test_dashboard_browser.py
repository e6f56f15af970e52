"""The dashboard in a real headless Chromium (Debian's chromium and chromium-driver, driven by Selenium).

A gateway serves a seeded store on a loopback socket; every page must load with no console error and no failed
request, its charts must carry the seeded numbers, a promote click must move the champion and write the audit entry,
and a screenshot of each page is written under the test's output folder (``$FORGEPILOT_SCREENSHOTS`` too, if set).
Without Chromium the test skips, unless ``FORGEPILOT_REQUIRE_BROWSER=1`` (CI sets it once Chromium is installed).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.test_dashboard import PAGES, make_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _need_browser() -> None:
    missing = [name for name, found in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if not found]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (extra dev)")
    if missing:
        message = f"no {', '.join(missing)}: apt-get install chromium chromium-driver"
        if os.environ.get("FORGEPILOT_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def served(isolated_state: Path, tmp_path: Path) -> Iterator[tuple[str, Any, Any]]:
    import uvicorn

    app, registry, monitoring, store, _ = make_app(isolated_state, tmp_path, auth=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", registry, monitoring
    server.should_exit = True
    thread.join(timeout=10)
    for thing in (store, monitoring, registry):
        thing.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER or ""), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _failed_requests(driver: Any) -> list[str]:
    """Requests that failed or answered 4xx/5xx since the last call (from Chromium's performance log)."""
    failed = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.loadingFailed" and not params.get("canceled"):
            failed.append(f"{params.get('errorText')} ({params.get('type')})")
        elif message["method"] == "Network.responseReceived" and params["response"]["status"] >= 400:
            failed.append(f"{params['response']['status']} {params['response']['url']}")
    return failed


def test_every_page_in_a_real_browser(served: tuple[str, Any, Any], browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, registry, monitoring = served
    shots = tmp_path / "screenshots"
    shots.mkdir()
    extra = Path(os.environ["FORGEPILOT_SCREENSHOTS"]) if os.environ.get("FORGEPILOT_SCREENSHOTS") else None
    for path in [*PAGES, "/ui/releases/decisions/dec-1", "/ui/data/decision/dec-1"]:
        browser.get(url + path)
        WebDriverWait(browser, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")
        time.sleep(0.3)  # the live numbers' first server-sent event
        errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], (path, errors)
        assert _failed_requests(browser) == [], path
        name = (path.strip("/").replace("/", "-") or "ui") + ".png"
        assert browser.save_screenshot(str(shots / name))
        if extra is not None:
            extra.mkdir(parents=True, exist_ok=True)
            shutil.copy(shots / name, extra / name)
        assert browser.find_element(By.TAG_NAME, "h1").text

    # The overview's charts carry the numbers its JSON serves; live numbers arrived over SSE.
    browser.get(url + "/ui")
    overview = httpx.get(url + "/ui/api/overview").json()
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 3
    drawn = json.loads(charts[0].get_attribute("data-chart"))["series"][0]["points"]
    assert [p[1] for p in drawn] == [p[1] for p in overview["series"]["requests"]]
    assert len(charts[0].find_elements(By.TAG_NAME, "circle")) >= len(drawn)
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-live=mode]").text == "normal")

    # Promote, with the confirmation a person gives.
    browser.get(url + "/ui/deployments")
    form = browser.find_element(By.CSS_SELECTOR, "form[action='/ui/deployments/promote']")
    form.find_element(By.NAME, "reason").send_keys("browser test")
    form.find_element(By.NAME, "confirm").click()
    browser.find_element(By.ID, "action-promote").click()
    WebDriverWait(browser, 5).until(ec.alert_is_present())
    browser.switch_to.alert.accept()
    WebDriverWait(browser, 10).until(lambda d: "done=promote" in d.current_url)
    assert registry.deployment("champion").target["model"] == "fake:canary"
    entry = monitoring.audit.last("promoted")
    assert entry is not None and "browser test" in entry.reason
    assert "promoted" in browser.find_element(By.TAG_NAME, "main").text
    browser.save_screenshot(str(shots / "ui-deployments-promoted.png"))
