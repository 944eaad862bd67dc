"""The status API on Faust's web server (aiohttp). Every worker answers every query.

    GET /api/email/idle/status               the caller's tenant: all mailboxes + counts
    GET /api/email/idle/status/{email_type}  the caller's mailboxes of that type (404: none)
    GET /api/email/idle/admin/all            admin only: every tenant, gathered from all workers
    GET /api/email/idle/admin/local          admin only: this worker's share of admin/all
    GET /api/email/idle/ready                200 once tables are recovered, else 503 (no auth)

Order of checks: ready (503) -> credential (401) -> permission (403) -> owner. A tenant query is
answered by the worker owning the tenant's partition; any other worker forwards it there with the
caller's credential, and the owner checks that credential again (no trust between workers beyond
that). The tenant always comes from the credential, never from the request, so a tenant cannot
ask for another tenant's rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any, cast

from faust.web import Request, Response, View

from control.auth import Principal
from streams import render
from streams.app import StatusApp
from streams.credentials import AuthUnavailable, Credentials
from streams.limits import MAX_EMAIL_TYPE_CHARS
from streams.routing import FORWARDED_BY, Cluster, PeerUnavailable

log = logging.getLogger(__name__)

PREFIX = "/api/email/idle"


def _today() -> date:
    return datetime.now(UTC).date()


class _Refusal(Exception):
    def __init__(self, status: int, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status, self.reason, self.extra = status, reason, extra


class StatusApi:
    def __init__(
        self,
        status_app: StatusApp,
        credentials: Credentials,
        cluster: Cluster,
        today: Callable[[], date] = _today,
    ) -> None:
        self._sa = status_app
        self._credentials = credentials
        self._cluster = cluster
        self._today = today

    def install(self) -> None:
        app = self._sa.app
        api = self

        @app.page(f"{PREFIX}/status")
        async def tenant_status(view: View, request: Request) -> Response:
            return await api._answer(view, api._tenant(view, request, None))

        @app.page(f"{PREFIX}/status/{{email_type}}")
        async def type_status(view: View, request: Request, email_type: str) -> Response:
            return await api._answer(view, api._tenant(view, request, email_type))

        @app.page(f"{PREFIX}/admin/all")
        async def admin_all(view: View, request: Request) -> Response:
            return await api._answer(view, api._admin_all(view, request))

        @app.page(f"{PREFIX}/admin/local")
        async def admin_local(view: View, request: Request) -> Response:
            return await api._answer(view, api._admin_local(view, request))

        @app.page(f"{PREFIX}/ready")
        async def ready(view: View, request: Request) -> Response:
            ok = self._cluster.ready()
            return view.json({"ready": ok}, status=200 if ok else 503)

        # Close our clients before Faust closes the loop. (mode's handler type names its
        # `signal` argument's type by a string mypy cannot resolve, hence the cast.)
        app.on_before_shutdown.connect(cast(Any, self._close))

    async def _close(self, _sender: Any, *_args: Any, signal: Any, **_kw: Any) -> None:
        await self._credentials.close()
        await self._cluster.close()

    async def _answer(self, view: View, work: Awaitable[Response]) -> Response:
        try:
            return await work
        except _Refusal as r:
            headers = {"WWW-Authenticate": "Bearer"} if r.status == 401 else {}
            if r.status == 503:
                headers["Retry-After"] = "1"
            return view.json({"error": r.reason, **r.extra}, status=r.status, headers=headers)

    async def _principal(self, request: Request) -> Principal:
        if not self._cluster.ready():
            raise _Refusal(503, "tables are being recovered or rebalanced")
        try:
            principal = await self._credentials.principal(request.headers.get("Authorization"))
        except AuthUnavailable:
            raise _Refusal(503, "credentials cannot be checked right now") from None
        if principal is None:
            raise _Refusal(401, "missing or invalid bearer token")
        return principal

    async def _tenant(self, view: View, request: Request, email_type: str | None) -> Response:
        principal = await self._principal(request)
        if principal.tenant_id is None:
            raise _Refusal(403, "this credential is not bound to a tenant; use admin/all")
        if email_type is not None and len(email_type) > MAX_EMAIL_TYPE_CHARS:
            raise _Refusal(404, "unknown email type")  # no mailbox can have it: skip the lookup
        tenant_id = principal.tenant_id
        owner = self._cluster.owner_of(tenant_id)
        if owner is None:
            raise _Refusal(503, "no worker holds this tenant's partition yet")
        if not self._cluster.is_me(owner):
            return await self._forward(view, request, owner)
        if self._cluster.partition_of(tenant_id) not in self._cluster.local_partitions():
            raise _Refusal(503, "partition is moving between workers")
        status = self._sa.table.get(tenant_id)
        if email_type is not None and not render.has_type(status, email_type):
            raise _Refusal(404, "unknown email type")
        return view.json(render.tenant(tenant_id, status, self._today(), email_type))

    async def _forward(self, view: View, request: Request, owner: str) -> Response:
        if request.headers.get(FORWARDED_BY):
            # The sender thinks we own it, we think `owner` does: assignments are changing.
            raise _Refusal(503, "workers disagree about the owner; retry")
        try:
            status, body = await self._cluster.get(
                owner, str(request.rel_url), request.headers.get("Authorization", "")
            )
        except PeerUnavailable:
            raise _Refusal(503, "the worker owning this tenant does not answer") from None
        headers = {"Retry-After": "1"} if status == 503 else {}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return view.json(body, status=status, headers=headers)

    async def _admin(self, request: Request) -> Principal:
        principal = await self._principal(request)
        if not principal.is_admin:
            raise _Refusal(403, "admin credential required")
        return principal

    async def _admin_local(self, view: View, request: Request) -> Response:
        await self._admin(request)
        return view.json(self._local_share())

    def _local_share(self) -> dict[str, Any]:
        """This worker's active partitions and the tenants in them (standby copies left out)."""
        mine = self._cluster.local_partitions()
        today = self._today()
        tenants = [
            render.tenant(tenant_id, status, today)
            for tenant_id, status in list(self._sa.table.items())
            if self._cluster.partition_of(tenant_id) in mine
        ]
        return {"worker": self._cluster.me, "partitions": sorted(mine), "tenants": tenants}

    async def _admin_all(self, view: View, request: Request) -> Response:
        await self._admin(request)
        owners = self._cluster.owners()
        others = [url for url in owners if not self._cluster.is_me(url)]
        auth = request.headers.get("Authorization", "")
        results = await asyncio.gather(
            *(self._cluster.get(url, f"{PREFIX}/admin/local", auth) for url in others),
            return_exceptions=True,
        )
        shares = [self._local_share()]
        for url, result in zip(others, results, strict=True):
            if isinstance(result, BaseException) or result[0] != 200:
                raise _Refusal(503, "a worker did not answer", worker=url)
            shares.append(result[1])
        # Complete only if every partition is covered exactly once: a worker that just lost or
        # gained partitions would otherwise drop or repeat tenants.
        seen: list[int] = [p for share in shares for p in share["partitions"]]
        missing = sorted(set(range(self._cluster.partitions)) - set(seen))
        if missing or len(seen) != len(set(seen)):
            raise _Refusal(503, "partitions are moving between workers", missing=missing)
        out = render.all_tenants(t for share in shares for t in share["tenants"])
        out["workers"] = sorted(share["worker"] for share in shares)
        return view.json(out)
