"""Which worker owns a tenant, and talking to the other workers.

Faust's partition assignor publishes, with every assignment, which worker (by its canonical URL,
`http://web_host:web_port`) holds which active changelog partitions. A tenant's rows live in
partition `murmur2(tenant_id) % partitions` (streams._kafka), so the owner of a tenant is the
worker whose active partitions include that one. This is the lookup `app.table_route` performs;
we do it ourselves because the key is the caller's tenant (from the credential, not the URL) and
because forwarding needs a timeout and a loop guard that Faust's Router does not have
(docs/streams.md, "Routing").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from streams._kafka import partition_for_key
from streams.app import StatusApp
from streams.limits import PEER_TIMEOUT_SECONDS

log = logging.getLogger(__name__)

# Set on requests one worker sends another. A forwarded request is never forwarded again: if
# two workers disagree about an owner (mid-rebalance) the answer is 503, not a ping-pong.
FORWARDED_BY = "X-Idlewire-Forwarded-By"


def _ident(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    return (u.hostname or "", u.port or 80)


class PeerUnavailable(Exception):
    """Another worker did not answer in time (retriable: 503)."""


class Cluster:
    def __init__(self, status_app: StatusApp, timeout: float = PEER_TIMEOUT_SECONDS) -> None:
        self._sa = status_app
        self._app = status_app.app
        self._me = _ident(status_app.settings.canonical_url)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    @property
    def me(self) -> str:
        return self._sa.settings.canonical_url

    @property
    def partitions(self) -> int:
        return self._sa.settings.partitions

    def ready(self) -> bool:
        """Tables are recovered and no rebalance is under way: local reads are complete."""
        app = self._app
        # TableManagerT does not declare `recovery`; the concrete TableManager has it.
        recovery: Any = getattr(app.tables, "recovery")  # noqa: B009
        return (
            recovery.completed.is_set()
            and not app.rebalancing
            and not app.in_recovery
        )

    def partition_of(self, tenant_id: str) -> int:
        return partition_for_key(tenant_id.encode(), self.partitions)

    def owners(self) -> dict[str, set[int]]:
        """Worker URL -> the changelog partitions it holds actively, as of the last assignment."""
        topic = self._sa.changelog_topic
        metadata: Mapping[str, Mapping[str, list[int]]] = self._app.assignor.tables_metadata()
        return {url: set(topics.get(topic, ())) for url, topics in metadata.items()}

    def owner_of(self, tenant_id: str) -> str | None:
        p = self.partition_of(tenant_id)
        return next((url for url, ps in self.owners().items() if p in ps), None)

    def is_me(self, url: str) -> bool:
        return _ident(url) == self._me

    def local_partitions(self) -> set[int]:
        """The changelog partitions this worker holds actively right now."""
        topic = self._sa.changelog_topic
        return {tp.partition for tp in self._app.assignor.assigned_actives() if tp.topic == topic}

    async def get(self, url: str, path_qs: str, authorization: str) -> tuple[int, Any]:
        """GET another worker's API with the caller's credential; (status, parsed JSON body)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Authorization": authorization, FORWARDED_BY: self.me}
        try:
            async with self._http.get(url.rstrip("/") + path_qs, headers=headers) as resp:
                return resp.status, json.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("worker %s did not answer: %s", url, type(exc).__name__)
            raise PeerUnavailable(url) from exc

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
