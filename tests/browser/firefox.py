"""Debian's firefox-esr for the browser tests, driven by puppeteer-core over WebDriver BiDi
(Playwright cannot drive a stock Firefox) through firefox/driver.mjs, a Node process that
takes one JSON request a line. `FirefoxPage` offers the part of Playwright's Page that the
tests use, so that PartyPage and the tests have one code path for either browser.

puppeteer-core comes from npm at the version firefox/package-lock.json pins, installed on first
use into firefox/node_modules; it never downloads a browser.
"""

from __future__ import annotations

import base64
import itertools
import json
import queue
import subprocess
import threading
from collections import deque
from pathlib import Path
from typing import Any

from playwright.sync_api import TimeoutError as PlaywrightTimeout

FIREFOX = Path("/usr/bin/firefox-esr")
DRIVER = Path(__file__).parent / "firefox"
SLACK = 30  # seconds the driver may take beyond an operation's own timeout


def install_driver() -> None:
    """puppeteer-core as the lock file pins it (again if the lock file changed)."""
    installed = DRIVER / "node_modules" / ".package-lock.json"
    lock = DRIVER / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=DRIVER,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


class DriverError(Exception):
    """What the driver reported for a request that failed."""


class Firefox:
    """One headless firefox-esr, its driver started where `loopback` runs the parties."""

    def __init__(self, loopback) -> None:
        command = loopback.command("node", str(DRIVER / "driver.mjs"), str(FIREFOX), cwd=DRIVER)
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=DRIVER)
        self._answers: queue.Queue[dict | None] = queue.Queue()
        self._ids = itertools.count()
        self._stderr: deque[str] = deque(maxlen=40)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._stderr.extend, args=(self.proc.stderr,),
                         daemon=True).start()

    def request(self, op: str, seconds: float = 60, **args: Any) -> Any:
        """Send one request and wait for its answer (`seconds` and some slack); the driver
        answers in order."""
        number = next(self._ids)
        self.proc.stdin.write(json.dumps({"id": number, "op": op, **args}) + "\n")
        self.proc.stdin.flush()
        answer = {"id": -1}
        while answer["id"] != number:  # skipping late answers to requests given up on
            try:
                answer = self._answers.get(timeout=seconds + SLACK)
            except queue.Empty:
                raise DriverError(f"the Firefox driver did not answer {op} in time") from None
            if answer is None:
                raise DriverError(f"the Firefox driver ended: {''.join(self._stderr)}")
        if "error" in answer:
            raise (PlaywrightTimeout if answer["timeout"] else DriverError)(answer["error"])
        return answer["value"]

    def tab(self, origin: str | None) -> FirefoxTab:
        return FirefoxTab(self, origin)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._answers.put(json.loads(line))
        self._answers.put(None)


class FirefoxTab:
    """A page in a browser context of its own (own key store), like party_page.ChromiumTab;
    with an origin, requests beyond loopback are refused and reported."""

    crashed = False  # a crashed tab fails the driver's requests instead

    def __init__(self, firefox: Firefox, origin: str | None) -> None:
        self._firefox = firefox
        self._id = firefox.request("open", origin=origin)
        self.page = FirefoxPage(firefox, self._id)

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and requests beyond loopback since last asked."""
        return self._firefox.request("problems", tab=self._id)

    def close(self) -> None:
        self._firefox.request("close", tab=self._id)


class FirefoxPage:
    """The part of Playwright's Page that the browser tests use, with its arguments."""

    def __init__(self, firefox: Firefox, tab: int) -> None:
        self._firefox = firefox
        self._tab = tab

    def _do(self, op: str, seconds: float = 60, **args: Any) -> Any:
        return self._firefox.request(op, seconds, tab=self._tab, **args)

    def goto(self, url: str) -> None:
        self._do("goto", url=url)

    def evaluate(self, expression: str, arg: Any = None) -> Any:
        return self._do("evaluate", source=expression, arg=arg)

    def add_init_script(self, script: str) -> None:
        self._do("init", source=script)

    def wait_for_selector(self, selector: str, state: str = "attached",
                          timeout: float = 30_000) -> None:
        assert state == "attached", "the driver waits until an element is in the document"
        self._do("wait", timeout / 1000, selector=selector, timeout=timeout)

    def fill(self, selector: str, value: str) -> None:
        self._do("fill", selector=selector, value=value)

    def select_option(self, selector: str, value: str) -> None:
        self._do("fill", selector=selector, value=value)

    def click(self, selector: str) -> None:
        self._do("click", selector=selector)

    def inner_text(self, selector: str) -> str:
        return self._property(selector, "innerText")

    def text_content(self, selector: str) -> str:
        return self._property(selector, "textContent")

    def input_value(self, selector: str) -> str:
        return self._property(selector, "value")

    def eval_on_selector_all(self, selector: str, expression: str) -> Any:
        return self.evaluate(f"(selector) => ({expression})([...document.querySelectorAll("
                             "selector)])", selector)

    def screenshot(self, path: str, full_page: bool = True) -> None:
        assert full_page, "the driver takes whole pages"
        Path(path).write_bytes(base64.b64decode(self._do("screenshot")))

    def _property(self, selector: str, name: str) -> str:
        return self.evaluate(f"(selector) => document.querySelector(selector).{name}", selector)
