"""The HTTP face of OpenPAYGO Metrics: `POST /dd` (alias `/device_data`), `POST /data_format`.

`register` adds the routes to the platform's router; the platform hands in how to run a job
on its store thread and how to read its clock, so this module needs nothing else of app.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..callbacks import json_object
from ..store import Store
from .ingest import compact, device_data, register_format
from .wire import parse_format, parse_request

Run = Callable[..., Awaitable[Any]]
PATHS = ("/dd", "/device_data")
FORMAT_PATH = "/data_format"


def register(router: web.UrlDispatcher, run: Run, now_ms: Callable[[web.Application], int]) -> None:
    async def device_data_route(request: web.Request) -> web.Response:
        body = await request.read()
        parsed = parse_request(body)

        def ingest(store: Store) -> dict[str, Any]:  # stamped when the transaction runs
            return device_data(store, parsed, len(body), now_ms(request.app))

        answer = await run(request.app, ingest)
        return web.json_response(answer, status=201, dumps=compact)

    async def data_format_route(request: web.Request) -> web.Response:
        fmt = parse_format(json_object(await request.read()))
        format_id = await run(request.app, lambda store: register_format(store, fmt))
        return web.json_response({"id": format_id}, status=201)

    for path in PATHS:
        router.add_post(path, device_data_route)
    router.add_post(FORMAT_PATH, data_format_route)
