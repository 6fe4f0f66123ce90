"""One end user at the user pages in headless Chromium, at desktop or phone width.

``UserPages`` is the operator's ``Console`` (same driver, same screenshot folders) with what the
user pages need: signing in at /login/, reading dollar figures, JavaScript state across a live
update, and a phone's screen (375 x 812, emulated through the DevTools protocol with a mobile
viewport, so the page's own ``<meta name=viewport>`` decides its width as on a real phone).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.browser.console import HEIGHT, SAVED, WIDTH, Console

PHONE = (375, 812)
MIN_TARGET_PX = 24  # the smallest tap target WCAG 2.2 accepts (2.5.8), in CSS pixels
_USD = re.compile(r"-?\$[\d,]+\.\d{2}")
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def plain(amount: Decimal) -> str:
    """A crypto amount as the pages show it: as stored, trailing zeros stripped."""
    text = format(amount, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def first_number(text: str) -> str:
    """The first number in a text ("25.5 USDT (...)" -> "25.5"), without thousands commas."""
    found = re.search(r"\d[\d,]*(?:\.\d+)?", text)
    assert found, f"no amount in {text!r}"
    return found[0].replace(",", "")


class UserPages(Console):
    """The user pages as one user sees them; ``phone()`` switches to a phone's screen."""

    on_phone = False

    def start(self, test_name: str) -> None:
        self.desktop()
        super().start(test_name)

    # --- screen size ----------------------------------------------------------------------

    def phone(self) -> None:
        """A 375 x 812 phone screen (device pixel ratio 2, mobile viewport, touch)."""
        self._emulate(PHONE[1])
        self.driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True})
        self.on_phone = True

    def desktop(self) -> None:
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        self.driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})
        self.driver.set_window_size(WIDTH, HEIGHT)
        self.on_phone = False

    def _emulate(self, height: int) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": PHONE[0], "height": height, "deviceScaleFactor": 2, "mobile": True},
        )

    def shot(self, step: str) -> Any:
        """As ``Console.shot``; on a phone the emulated screen is stretched to the page."""
        if not self.on_phone:
            return super().shot(step)
        self._step += 1
        path = self.shots / f"{self._step:02d}-{step}.png"
        height = self.js("return document.documentElement.scrollHeight")
        self._emulate(max(PHONE[1], int(height)))
        try:
            self.driver.save_screenshot(str(path))
        finally:
            self._emulate(PHONE[1])
        SAVED.append(path)
        return path

    # --- pages ----------------------------------------------------------------------------

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def open(self, path: str) -> None:
        super().open(path)
        title = self.driver.title
        assert not title.startswith(("Not Found", "Forbidden", "Bad Request")), (
            f"{path} answered {title!r}\n{self.server_log()}"
        )

    def enter(self, values: dict[str, str]) -> None:
        """Type into inputs, or pick the option with that value of a select, by CSS selector."""
        for css, value in values.items():
            element = self.find(css)
            if element.tag_name == "select":
                Select(element).select_by_value(value)
            else:
                element.clear()
                element.send_keys(value)

    def sign_in(self, username: str, password: str) -> None:
        """Sign in through /login/ (wherever the browser is); lands where the login leads."""
        if not self.path.startswith("/login/"):
            self.open("/login/")
        self.enter({"#id_username": username, "#id_password": password})
        self.click("#login-submit")
        assert self.has("#logout"), f"{username} is not signed in: {self.login_errors()}"

    def login_errors(self) -> list[str]:
        return [e.text for e in self.find_all("#login-error, .errorlist li, .errorlist")]

    def shown(self, css: str) -> str:
        """What an element shows: an input's value, any other element's text, stripped."""
        element = self.find(css)
        if element.tag_name in ("input", "textarea"):
            return str(element.get_attribute("value") or "").strip()
        return str(element.text).strip()

    def usd(self, css: str, *, first: bool = False) -> Decimal:
        """The one dollar figure an element shows ("$1,234.50" -> Decimal("1234.50")), or with
        ``first`` the first of several (a total before its breakdown)."""
        text = self.shown(css)
        found = _USD.findall(text)
        assert found if first else len(found) == 1, f"{css}: one USD amount? {text!r}"
        return Decimal(found[0].replace("$", "").replace(",", ""))

    def copied(self, button: str) -> str:
        """Press a copy button and return what it put on the clipboard."""
        self.driver.execute_cdp_cmd(
            "Browser.grantPermissions",
            {
                "origin": self.base_url,
                "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
            },
        )
        self.js("return navigator.clipboard.writeText('')")
        self.press(button)
        return str(
            self.wait(
                lambda _: self.driver.execute_async_script(
                    "const done = arguments[arguments.length - 1];"
                    "navigator.clipboard.readText().then(done, () => done(''))"
                ),
                f"the clipboard after pressing {button}",
                timeout=5,
            )
        )

    def opened(self, pattern: str) -> str:
        """The id in the current path, which must be ``pattern`` with {id} a UUID."""
        match = re.fullmatch(pattern.format(id=f"({_UUID})"), self.path)
        assert match, f"expected {pattern}, at {self.path}"
        return match[1]

    def status(self, css: str) -> str:
        """The data-status of an element, read afresh (live updates may replace the element)."""
        script = "const e = document.querySelector(arguments[0]); return e && e.dataset.status"
        return str(self.js(script, css))

    def qr_loaded(self) -> int:
        """The QR code is an image from our own host that has loaded; its width on the page."""
        qr = self.find("#payment-qr")
        self.wait(
            lambda _: self.js("return arguments[0].complete && arguments[0].naturalWidth > 0", qr),
            "the QR image to load",
        )
        src = urlsplit(str(self.js("return arguments[0].currentSrc || arguments[0].src", qr)))
        ours = urlsplit(self.base_url)
        assert (src.scheme, src.netloc) == (ours.scheme, ours.netloc), src.geturl()
        # Nothing on the page came from anywhere else (the address never goes to a third party).
        origins = self.js(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
        )
        assert set(origins) <= {f"{ours.scheme}://{ours.netloc}"}, origins
        return int(self.js("return arguments[0].getBoundingClientRect().width", qr))

    # --- phone checks ---------------------------------------------------------------------

    def assert_fits_the_screen(self) -> None:
        """The page is laid out for the phone's width and never scrolls sideways."""
        inner, scroll = self.js("return [window.innerWidth, document.documentElement.scrollWidth]")
        assert inner == PHONE[0], (
            f"{self.path}: laid out {inner} px wide on a {PHONE[0]} px phone "
            "(no <meta name=viewport content='width=device-width'>?)"
        )
        assert scroll <= inner, f"{self.path} scrolls sideways: {scroll} px on a {inner} px screen"

    def assert_usable(self, *selectors: str) -> None:
        """Each control is shown, inside the screen's width, big enough to tap, not covered."""
        for css in selectors:
            element = self.find(css)
            assert element.is_displayed(), f"{self.path}: {css} is not shown"
            self.js("arguments[0].scrollIntoView({block: 'center'})", element)
            box = self._box(element)
            assert 0 <= box["left"] <= box["right"] <= PHONE[0] + 0.5, (
                f"{self.path}: {css} sticks out of the screen: {box}"
            )
            if element.tag_name in ("input", "select", "button", "a", "textarea"):
                assert min(box["width"], box["height"]) >= MIN_TARGET_PX, (
                    f"{self.path}: {css} is too small to tap: {box}"
                )
            assert box["on_top"], f"{self.path}: {css} is covered by another element"

    def _box(self, element: WebElement) -> dict[str, Any]:
        return dict(
            self.js(
                """
                const e = arguments[0], r = e.getBoundingClientRect();
                const x = r.left + r.width / 2, y = r.top + r.height / 2;
                const top = document.elementFromPoint(x, y);
                return {left: r.left, right: r.right, width: r.width, height: r.height,
                        on_top: !!top && (top === e || e.contains(top)
                                          || (e.labels && [...e.labels].includes(top)))};
                """,
                element,
            )
        )
