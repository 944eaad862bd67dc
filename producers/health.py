"""Health and readiness endpoints of a producer process (for orchestrators and operators)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from producers.manager import Manager


async def serve(manager: Manager, port: int, ready: Callable[[], bool]) -> web.AppRunner:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "producer_id": manager.settings.instance_id})

    async def readyz(request: web.Request) -> web.Response:
        ok = ready()
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def mailboxes(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "producer_id": manager.settings.instance_id,
                "mailboxes": {k: str(v) for k, v in sorted(manager.states().items())},
            }
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/mailboxes", mailboxes)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner
