"""One operator at the admin in headless Chromium: pages, forms, messages, screenshots, downloads.

The browser tests (tests/browser/) share one Chromium per module through ``Console``; each
test gets its own screenshot folder, ``var/artifacts/browser/<test name>/NN-step.png``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "artifacts" / "browser"
WIDTH, HEIGHT = 1280, 900
WAIT = 15  # seconds for a page to load or a download to finish
SAVED: list[Path] = []  # every screenshot of this session, for the terminal summary


class Console:
    """The admin as one signed-in (or not) operator sees it in the browser."""

    def __init__(
        self,
        driver: WebDriver,
        *,
        base_url: str,
        downloads: Path,
        server_log: Callable[[], str] = str,
    ) -> None:
        self.driver = driver
        self.server_log = server_log  # the web process's log tail, shown with a server error
        self.base_url = base_url.rstrip("/")
        self.downloads = downloads
        self.shots = ARTIFACTS / "unnamed"
        self._step = 0

    # --- per test -------------------------------------------------------------------------

    def start(self, test_name: str) -> None:
        """A fresh start for a test: no session cookie, an empty folder for its screenshots."""
        for extra in self.driver.window_handles[1:]:  # a tab a failed test left open
            self.driver.switch_to.window(extra)
            self.driver.close()
        self.driver.switch_to.window(self.driver.window_handles[0])
        self.driver.delete_all_cookies()
        self.driver.set_window_size(WIDTH, HEIGHT)
        self.shots = ARTIFACTS / re.sub(r"[^\w.-]+", "_", test_name)
        shutil.rmtree(self.shots, ignore_errors=True)
        self.shots.mkdir(parents=True)
        self._step = 0
        for leftover in self.downloads.iterdir():
            leftover.unlink()

    def shot(self, step: str) -> Path:
        """Save the whole page as ``NN-step.png`` (the window stretched to the page's height)."""
        self._step += 1
        path = self.shots / f"{self._step:02d}-{step}.png"
        # The window's own bars take part of its height: add them to the page's.
        height = self.driver.execute_script(
            "return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)"
            " + window.outerHeight - window.innerHeight"
        )
        self.driver.set_window_size(WIDTH, max(HEIGHT, int(height)))
        try:
            self.driver.save_screenshot(str(path))
        finally:
            self.driver.set_window_size(WIDTH, HEIGHT)
        SAVED.append(path)
        return path

    # --- navigation -----------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    @property
    def path(self) -> str:
        """The current page's path and query, e.g. ``/admin/payments/withdrawalrequest/?q=1``."""
        parts = urlsplit(self.driver.current_url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def open(self, path: str) -> None:
        self.driver.get(self.url(path))
        self.wait_loaded()

    def wait(self, condition: Callable[[Any], Any], what: str, timeout: float = WAIT) -> Any:
        return WebDriverWait(self.driver, timeout).until(condition, f"waited for {what}")

    def wait_loaded(self) -> None:
        self.wait(
            lambda d: d.execute_script("return document.readyState") == "complete", "the page"
        )
        title = self.driver.title
        if "Server Error" in title:
            raise AssertionError(f"{self.path} answered a server error\n{self.server_log()}")

    def find(self, css: str) -> WebElement:
        return self.wait(ec.presence_of_element_located((By.CSS_SELECTOR, css)), css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def has(self, css: str) -> bool:
        try:
            self.driver.find_element(By.CSS_SELECTOR, css)
        except NoSuchElementException:
            return False
        return True

    def click(self, css: str) -> None:
        """Click an element and wait for the page it leads to (a link or a submit button)."""
        element = self.wait(ec.element_to_be_clickable((By.CSS_SELECTOR, css)), css)
        element.click()
        self.wait(_gone(element), f"the page after clicking {css}")
        self.wait_loaded()

    def press(self, css: str) -> None:
        """Click an element that is not expected to leave the page (a refused submit)."""
        self.wait(ec.element_to_be_clickable((By.CSS_SELECTOR, css)), css).click()

    def validation_message(self, css: str) -> str:
        """What the browser's own form validation says about a field ("" when it is valid)."""
        return str(
            self.driver.execute_script("return arguments[0].validationMessage", self.find(css))
        )

    def fill(self, values: dict[str, str]) -> None:
        """Type into inputs and textareas, or pick an option of a select, by field name."""
        for name, value in values.items():
            element = self.find(f"[name={name}]")
            if element.tag_name == "select":
                element.find_element(By.CSS_SELECTOR, f"option[value='{value}']").click()
            else:
                element.clear()
                element.send_keys(value)

    def text(self, css: str = "body") -> str:
        return str(self.find(css).text)

    def messages(self, level: str) -> list[str]:
        """The admin's messages of one level (``success``, ``warning``, ``error``)."""
        return [e.text for e in self.find_all(f"ul.messagelist li.{level}")]

    def errors(self) -> list[str]:
        """Every error the page shows: messages and form errors."""
        css = "ul.messagelist li.error, .errornote, ul.errorlist li"
        return [e.text for e in self.find_all(css)]

    def new_tab(self, path: str) -> str:
        """Open ``path`` in a new tab of the same session, switch to it; its handle."""
        self.driver.switch_to.new_window("tab")
        self.open(path)
        return str(self.driver.current_window_handle)

    def switch(self, handle: str) -> None:
        self.driver.switch_to.window(handle)

    def close_tab(self, then: str) -> None:
        """Close the current tab and go on in ``then``."""
        self.driver.close()
        self.switch(then)

    # --- the operator ---------------------------------------------------------------------

    def login(self, username: str, password: str) -> None:
        self.open("/admin/login/")
        self.fill({"username": username, "password": password})
        self.click("input[type=submit], button[type=submit]")
        assert self.has("#logout-form"), f"{username} is not signed in: {self.errors()}"

    def logout(self) -> None:
        self.click("#logout-form button[type=submit]")
        assert not self.has("#logout-form")

    # --- downloads ------------------------------------------------------------------------

    def downloaded(self, suffix: str) -> Path:
        """Wait for the one finished download ending in ``suffix`` and return its path."""

        def finished(_: Any) -> Path | None:
            if any(p.name.endswith(".crdownload") for p in self.downloads.iterdir()):
                return None
            done = [p for p in self.downloads.iterdir() if p.name.endswith(suffix)]
            return done[0] if len(done) == 1 and done[0].stat().st_size > 0 else None

        path: Path = self.wait(finished, f"a {suffix} download in {self.downloads}")
        return path


def _gone(element: WebElement) -> Callable[[Any], bool]:
    """Whether ``element``'s page has been replaced (Chromium may say so in two ways)."""

    def gone(_: Any) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc.msg):
                return True
            raise
        return False

    return gone
