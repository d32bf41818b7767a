"""A real headless Chromium, driven over the DevTools protocol on a websocket (aiohttp), for
tests of pages: what the page logged, what it requested, and what its DOM holds once its
scripts ran. No driver package: the protocol is JSON over one websocket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
START_S = 30.0
"""Chromium's first start on a cold disk can take seconds; past this it is broken."""


def chromium() -> str | None:
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def why_missing() -> str:
    """Why there is no Chromium here, in the system's terms (for the skip reason)."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return f"no Chromium on PATH, and setup installs it only on Linux (this is {os.name})"
    if shutil.which("apt-get") is None:
        return "no Chromium on PATH, and this system has no apt-get for setup to install it"
    if os.geteuid() != 0:
        return (
            "no Chromium on PATH, and setup could not install it: not root (run"
            " `sudo apt-get install chromium`)"
        )
    return "no Chromium on PATH: run the Makefile's setup (it apt-get installs chromium)"


@dataclass
class Loaded:
    """One page load: what the page said and asked for, and the value of the probe."""

    errors: list[str] = field(default_factory=list)
    """Console errors, uncaught exceptions, and the browser's own error entries (CSP...)."""
    requests: list[str] = field(default_factory=list)
    value: Any = None


class _Session:
    """Commands and events over the browser's websocket (flattened target sessions)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader

    async def _read(self) -> None:
        async for message in self.ws:
            doc = message.json()
            future = self.pending.pop(doc.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(doc)
            elif "method" in doc:
                await self.events.put(doc)
        for future in self.pending.values():  # the browser went away
            if not future.done():
                future.set_exception(ConnectionError("Chromium closed the DevTools connection"))

    async def send(self, method: str, session: str | None = None, **params: Any) -> Any:
        n = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[n] = future
        doc: dict[str, Any] = {"id": n, "method": method, "params": params}
        if session is not None:
            doc["sessionId"] = session
        await self.ws.send_json(doc)
        reply = await asyncio.wait_for(future, START_S)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})


def _describe(args: list[dict[str, Any]]) -> str:
    return " ".join(str(a.get("value", a.get("description", a.get("type")))) for a in args)


def _note(event: dict[str, Any], seen: Loaded) -> None:
    method, params = event["method"], event.get("params", {})
    if method == "Network.requestWillBeSent":
        seen.requests.append(params["request"]["url"])
    elif method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        seen.errors.append(details.get("exception", {}).get("description") or details["text"])
    elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        seen.errors.append(f"console.{params['type']}: {_describe(params.get('args', []))}")
    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
        entry = params["entry"]
        seen.errors.append(f"{entry.get('source')}: {entry['text']} {entry.get('url', '')}")


class Chromium:
    """A fresh headless Chromium with its own profile (an async context manager); `load`
    opens each page in a new tab."""

    def __init__(self, timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self._stack = contextlib.AsyncExitStack()
        self._cdp: _Session | None = None

    async def __aenter__(self) -> Chromium:
        binary = chromium()
        if binary is None:
            raise FileNotFoundError(why_missing())
        try:
            profile = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="chromium-"))
            args = [
                binary,
                "--headless",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ]
            if os.geteuid() == 0:
                args.insert(1, "--no-sandbox")  # Chromium refuses root with its sandbox on
            proc = await asyncio.create_subprocess_exec(
                *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
            self._stack.push_async_callback(_stop, proc)
            endpoint = await _endpoint(Path(profile), proc)
            http = await self._stack.enter_async_context(aiohttp.ClientSession())
            ws = await self._stack.enter_async_context(http.ws_connect(endpoint, max_msg_size=0))
            self._cdp = _Session(ws)
            self._stack.push_async_callback(self._cdp.close)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def load(self, url: str, probe: str) -> Loaded:
        """Open `url` in a new tab, wait for its load event, then evaluate the JavaScript
        expression `probe` (its JSON value is returned in `Loaded.value`)."""
        assert self._cdp is not None, "use Chromium() as an async context manager"
        async with asyncio.timeout(self.timeout_s):
            return await _visit(self._cdp, url, probe)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _endpoint(profile: Path, proc: asyncio.subprocess.Process) -> str:
    """The browser's websocket, from the DevToolsActivePort file Chromium writes at start."""
    port_file = profile / "DevToolsActivePort"
    for _ in range(int(START_S / 0.05)):
        if proc.returncode is not None:
            raise RuntimeError(f"Chromium exited at start with status {proc.returncode}")
        with contextlib.suppress(FileNotFoundError, ValueError):
            port, path = port_file.read_text().split("\n")[:2]
            if port and path:
                return f"ws://127.0.0.1:{int(port)}{path}"
        await asyncio.sleep(0.05)
    raise TimeoutError(f"Chromium did not open its DevTools port within {START_S:.0f} s")


async def _visit(cdp: _Session, url: str, probe: str) -> Loaded:
    seen = Loaded()
    target = await cdp.send("Target.createTarget", url="about:blank")
    attached = await cdp.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
    page = attached["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        await cdp.send(f"{domain}.enable", page)
    await cdp.send("Page.navigate", page, url=url)
    while True:  # bounded by the caller's timeout
        event = await cdp.events.get()
        if event.get("sessionId") == page:
            _note(event, seen)
            if event["method"] == "Page.loadEventFired":
                break
    result = await cdp.send(
        "Runtime.evaluate", page, expression=probe, returnByValue=True, awaitPromise=True
    )
    if "exceptionDetails" in result:
        seen.errors.append(f"probe: {result['exceptionDetails']}")
    seen.value = result["result"].get("value")
    await cdp.send("Target.closeTarget", targetId=target["targetId"])
    while not cdp.events.empty():  # whatever the page logged while the probe ran
        event = cdp.events.get_nowait()
        if event.get("sessionId") == page:
            _note(event, seen)
    return seen
