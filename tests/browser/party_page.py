"""One browser party: a page of the web app in its own browser context (own key store), in
Chromium (Playwright) or Firefox (firefox.py's driver), through one code path."""

from __future__ import annotations

import base64
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from .firefox import Firefox, FirefoxTab

# Waits go by CSS selectors: the page's Content-Security-Policy forbids the string evaluation
# that Playwright's wait_for_function does in the page.
READY = "body:not([data-phase='loading'])"
FINISHED = "body[data-phase='done'], body[data-phase='failed']"


class ChromiumTab:
    """A page in a browser context of its own; with an origin, requests beyond loopback are
    refused and reported."""

    def __init__(self, browser: Browser, origin: str | None) -> None:
        self.origin = origin
        self.context = browser.new_context(viewport={"width": 1100, "height": 900})
        if origin is not None:
            # Chromium offers 127.0.0.1 candidates only to pages allowed to enumerate devices.
            self.context.grant_permissions(["camera", "microphone"], origin=origin)
            self.context.route("**/*", self._only_loopback)
        self._problems: list[str] = []
        self.page = self.new_page()

    def new_page(self) -> Page:
        """The tab's page: a new one, as a crashed page cannot be loaded again."""
        self.page = self.context.new_page()
        self.crashed = False
        self.page.on("crash", self._crash)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self._problems.append(f"uncaught: {exc}"))
        return self.page

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and requests beyond loopback since last asked."""
        found, self._problems = self._problems, []
        return found

    def close(self) -> None:
        self.context.close()

    def _crash(self, _page: object) -> None:
        self.crashed = True
        self._problems.append("the page crashed")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self._problems.append(message.text)

    def _only_loopback(self, route: Route, request: Request) -> None:
        if request.url.startswith((f"{self.origin}/", "http://127.0.0.1:", "data:")):
            route.continue_()
        else:
            self._problems.append(f"request beyond loopback: {request.url}")
            route.abort()


def open_tab(browser: Browser | Firefox, origin: str | None = None) -> ChromiumTab | FirefoxTab:
    return browser.tab(origin) if isinstance(browser, Firefox) else ChromiumTab(browser, origin)


class PartyPage:
    """A page driven as a person would: through the form and what the page shows."""

    def __init__(self, browser: Browser | Firefox, origin: str) -> None:
        self.origin = origin
        self.tab = open_tab(browser, origin)
        self.page = self.tab.page
        self.public_key = ""
        self.ready_seconds = 0.0
        self.restored = False  # Python from the bundle's memory snapshot

    def open(self, query: str = "") -> None:
        """Start loading the page (with a link's query); `wait_ready` waits for Python."""
        self.page.goto(f"{self.origin}/{query}")

    def wait_ready(self, timeout: float = 90) -> None:
        self.page.wait_for_selector(READY, state="attached", timeout=timeout * 1000)
        assert self.phase == "ready", self.error or self.status
        # A hidden page is throttled (timers, scheduling) and would time a browser's background
        # tabs, not parties.
        assert self.page.evaluate("document.visibilityState") == "visible", "a hidden page"
        # The page's own clock, from navigation start: each step of the load (measure.py shows
        # them) in its order, until Python and MPyC are ready.
        timings = self.page.evaluate("window.mpcNet.timings")
        steps = [timings[step] for step in ("bundle", "pyodide", "wheels", "imported", "ready")]
        assert steps == sorted(steps), timings
        self.ready_seconds = timings["ready"] / 1000
        self.public_key = self.page.evaluate("window.mpcNet.publicKey")
        self.restored = self.page.evaluate("window.mpcNet.restored")

    def make_idle(self) -> None:
        """Reload a page that a failed test left in a run (it would wait for its peers), or
        that crashed (the next test gets a new renderer, the key survives in the context)."""
        crashed = self.tab.crashed
        if crashed:
            self.page = self.tab.new_page()
        if crashed or self.phase not in ("ready", "done", "failed"):
            self.open()
            self.wait_ready()
        self.problems()

    def join(self, room: str, party: int, parties: int, roster: str, demo: str,
             value: str = "") -> None:
        """Fill in the form and press Join."""
        self.page.fill("#room", room)
        self.page.fill("#party", str(party))
        self.page.fill("#parties", str(parties))
        self.page.select_option("#demo", demo)
        # A demo's input; other programs read theirs from standard input (#private-input).
        if self.page.eval_on_selector_all("#input-row", "rows => rows.some(r => !r.hidden)"):
            self.page.fill("#input", value)
        self.page.fill("#roster", roster)
        self.page.click("#join")

    def wait_finished(self, timeout: float = 120) -> str:
        """The phase the run ended in (or is still in after `timeout`)."""
        try:
            self.page.wait_for_selector(FINISHED, state="attached", timeout=timeout * 1000)
        except PlaywrightTimeout:
            pass
        return self.phase

    @property
    def phase(self) -> str:
        return self.page.evaluate("document.body.dataset.phase")

    @property
    def status(self) -> str:
        return self.page.inner_text("#status")

    @property
    def outputs(self) -> list[str]:
        return self.page.inner_text("#outputs").splitlines()

    @property
    def error(self) -> str:
        return self.page.text_content("#error").strip()

    @property
    def warning(self) -> str:
        return self.page.text_content("#warning").strip()

    @property
    def log(self) -> str:
        return self.page.text_content("#log")

    def peers(self) -> dict[int, list[str]]:
        """The parties table: party index -> [state, path, round trip]."""
        rows = self.page.eval_on_selector_all(
            "#peers tbody tr", "rows => rows.map(r => [...r.children].map(c => c.textContent))")
        return {int(row[0].removeprefix("party ")): row[1:] for row in rows}

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and requests beyond loopback since last asked."""
        return self.tab.problems()

    def screenshot(self, path: Path) -> None:
        self.page.screenshot(path=str(path), full_page=True)

    def close(self) -> None:
        self.tab.close()


def link_roster(roster_json: str) -> str:
    """A roster as it travels in a link: base64url of the roster file."""
    return base64.urlsafe_b64encode(roster_json.encode()).decode().rstrip("=")
