"""A real headless Chromium driven over the DevTools protocol (CDP), for the `judgekit view` tests
and benchmark.

Why this driver: Debian's `chromium` package is the browser CI can install (Playwright's browser
download cannot reach its host here, and selenium needs a matching chromedriver plus its own
driver-manager that reaches for the network). Chromium itself speaks CDP on a local websocket,
and CDP reports exactly what the tests must see: every console message, every uncaught
exception, and the browser's own log entries, which is where a Content-Security-Policy
violation or a failed load appears (`Log.entryAdded`), things a DOM dump cannot show. The only
Python dependency is `websockets` (its sync client), a small, well-kept library (in the `test`
extra).

The browser runs with a throw-away profile, no network proxy to reach anything outside, and is
ended (by its own process id) when the `Browser` closes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

_KEY_CODES = {"Enter": 13, "ArrowUp": 38, "ArrowDown": 40}
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    """The browser did not start, answer or evaluate as asked."""


def find_chromium() -> str | None:
    """$JUDGEKIT_CHROMIUM, else the first Chromium on PATH."""
    env = os.environ.get("JUDGEKIT_CHROMIUM")
    if env:
        return env
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium with one page. Console errors, uncaught exceptions and browser log
    errors collect in `errors`; `messages` holds every console message."""

    def __init__(self, executable: str | None = None, *, width: int = 1400, height: int = 900,
                 timeout: float = 60.0) -> None:
        from websockets.sync.client import connect

        exe = executable or find_chromium()
        if exe is None:
            raise BrowserError("no Chromium found (apt-get install chromium)")
        self.timeout = timeout
        self.profile = Path(tempfile.mkdtemp(prefix="judgekit-chromium-"))
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update",
                "--disable-dev-shm-usage", "--mute-audio", "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        self.errors: list[str] = []
        self.messages: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._opens = 0
        self._stack = contextlib.ExitStack()
        try:
            port, path = self._devtools_address()
            self.ws = self._stack.enter_context(
                connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=timeout))
            target = self.call("Target.createTarget", {"url": "about:blank"},
                               session=False)["targetId"]
            self.session = self.call("Target.attachToTarget",
                                     {"targetId": target, "flatten": True},
                                     session=False)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable")
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1,
                       "mobile": False})
        except BaseException:
            self.close()
            raise

    # -- plumbing -----------------------------------------------------------------------------
    def _devtools_address(self) -> tuple[str, str]:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"Chromium exited with code {self.proc.returncode}")
            with contextlib.suppress(OSError):
                lines = port_file.read_text().split("\n")
                if len(lines) >= 2 and lines[0].strip() and lines[1].strip():
                    return lines[0].strip(), lines[1].strip()
            time.sleep(0.05)
        raise BrowserError("Chromium did not open its DevTools port")

    def _record(self, msg: dict[str, Any]) -> None:
        self.events.append(msg)
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.messages.append(f"{params['type']}: {text}")
            if params["type"] in ("error", "assert"):
                self.errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            exc = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"uncaught: {exc}")
        elif method == "Log.entryAdded":
            entry = params["entry"]
            self.messages.append(f"log {entry['level']}: {entry['text']}")
            if entry["level"] == "error":
                self.errors.append(f"{entry['source']}: {entry['text']}")

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             session: bool = True) -> dict[str, Any]:
        """Send one CDP command and wait for its answer (events that arrive meanwhile are
        recorded)."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no answer to {method}")
            reply = json.loads(self.ws.recv(timeout=left))
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self._record(reply)

    def pump(self, seconds: float) -> None:
        """Record the events that arrive within `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                return
            if "method" in msg:
                self._record(msg)

    # -- what the tests use --------------------------------------------------------------------
    def open(self, path: str | os.PathLike[str], *, ready: str | None = None,
             fragment: str = "") -> float:
        """Load a file (at `#fragment`, if given) and wait for its load event (and for the
        expression `ready` to be true); returns the wall seconds from the navigation request to
        then."""
        # a query string of its own makes every open a new document: a URL that differs from
        # the current one only in its #fragment would scroll, not load
        self._opens += 1
        url = (Path(path).resolve().as_uri() + f"?open={self._opens}"
               + (f"#{fragment}" if fragment else ""))
        self.events = []
        start = time.perf_counter()
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not finish loading")
            self.pump(0.05)
        if ready is not None:
            self.wait_for(ready)
        return time.perf_counter() - start

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True})
        if "exceptionDetails" in res:
            details = res["exceptionDetails"]
            raise BrowserError(details.get("exception", {}).get("description")
                               or details.get("text", "evaluation failed"))
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression}")
            self.pump(0.05)

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the middle of the element, as a user's."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return r.width && r.height ? [r.left + r.width / 2, r.top + r.height / 2] : null;"
            " })()")
        if not box:
            raise BrowserError(f"nothing visible to click at {selector}")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1],
                                                   "button": "left", "clickCount": 1})

    def press(self, key: str) -> None:
        """Press and release a named key (ArrowDown, Enter...) in the focused element."""
        for kind in ("rawKeyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": key,
                                                 "windowsVirtualKeyCode": _KEY_CODES[key]})

    def type_text(self, selector: str, text: str) -> None:
        """Focus a field and type into it (real input events)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", {"text": text})

    def choose(self, selector: str, value: str) -> None:
        """Pick an option of a <select> as a user's change would (value set, change fired)."""
        ok = self.evaluate(
            f"(() => {{ const s = document.querySelector({json.dumps(selector)});"
            f" if (!s || ![...s.options].some(o => o.value === {json.dumps(value)})) return false;"
            f" s.focus(); s.value = {json.dumps(value)};"
            " s.dispatchEvent(new Event('change', {bubbles: true})); return true; })()")
        if not ok:
            raise BrowserError(f"{selector} has no option {value!r}")

    def screenshot(self, path: str | os.PathLike[str], *, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                              "scale": 1}
        data = self.call("Page.captureScreenshot", params)["data"]
        out = Path(path)
        out.write_bytes(base64.b64decode(data))
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
