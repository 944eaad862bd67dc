"""`python -m bench._producer`: `python -m producers` plus benchmark-only variants, to measure a
recommended change in the real producer process without changing the producer. Variants come
from the environment:

BENCH_TLS_READ_BUFFER_BYTES=N  producers.limits.TLS_READ_BUFFER_BYTES = N
BENCH_TRACE=1                  one stderr line per published batch with CLOCK_MONOTONIC times of
                               each hop: EXISTS read, IDLE ended (DONE answered), UID FETCH done,
                               publish started, acknowledged ("bench-trace {json}")
BENCH_GC_FREEZE=1              on SIGUSR1: gc.unfreeze(); gc.collect(); gc.freeze(), so that the
                               sessions' long-lived objects leave the cyclic GC's scans (a full
                               collection takes ~1.2 s at 10,000 TLS mailboxes)
"""

import gc
import os
import signal
import sys
import time

from producers import limits

if "BENCH_TLS_READ_BUFFER_BYTES" in os.environ:
    limits.TLS_READ_BUFFER_BYTES = int(os.environ["BENCH_TLS_READ_BUFFER_BYTES"])

if os.environ.get("BENCH_GC_FREEZE"):

    def _refreeze(signum: int, frame: object) -> None:
        t0 = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        print(
            f"bench: gc refreeze took {(time.perf_counter() - t0) * 1000:.0f} ms, "
            f"{gc.get_freeze_count()} objects frozen",
            file=sys.stderr,
            flush=True,
        )

    signal.signal(signal.SIGUSR1, _refreeze)

if os.environ.get("BENCH_TRACE"):
    import json
    from typing import Any

    from producers import _imap, _kafka

    _last: dict[int, dict[str, float]] = {}  # id(connection) -> hop times of the current wake-up
    _current: list[dict[str, float]] = [{}]
    _data_received = _imap.ImapConnection.data_received
    _idle = _imap.ImapConnection.idle
    _fetch_after = _imap.ImapConnection.fetch_after
    _publish_all = _kafka.KafkaPublisher.publish_all

    _send_fetch = _imap.ImapConnection._send_fetch

    def _traced_data_received(self: Any, d: bytes) -> None:
        now = time.monotonic()
        if b" EXISTS" in d and not self._exists:
            _last[id(self)] = {"exists": now}
        hops = _last.get(id(self))
        if hops is not None and "done_sent" in hops and "first_rx" not in hops:
            hops["first_rx"] = now
        _data_received(self, d)

    def _traced_send_fetch(self: Any, last_uid: int, prefix: bytes = b"") -> Any:
        hops = _last.get(id(self))
        if hops is not None and prefix:
            hops["done_sent"] = time.monotonic()
        return _send_fetch(self, last_uid, prefix)

    async def _traced_idle(self: Any, **kw: Any) -> str:
        out = await _idle(self, **kw)
        _last.setdefault(id(self), {})["idle_done"] = time.monotonic()
        return str(out)

    async def _traced_fetch(self: Any, last_uid: int) -> Any:
        out = await _fetch_after(self, last_uid)
        hops = _last.get(id(self))
        if out and hops is not None:
            hops["fetched"] = time.monotonic()
            # The session builds the events and calls publish_all() without yielding to the
            # loop in between, so the next publish_all() call is this fetch's.
            _current[0] = hops
            _last.pop(id(self), None)
        return out

    async def _traced_publish_all(self: Any, events: Any) -> None:
        hops, _current[0] = _current[0], {}
        hops["publish"] = time.monotonic()
        await _publish_all(self, events)
        hops["acked"] = time.monotonic()
        if events:
            line = {"mailbox_id": events[-1].mailbox_id, "uid": events[-1].uid, **hops}
            print("bench-trace " + json.dumps(line), file=sys.stderr, flush=True)

    _imap.ImapConnection.data_received = _traced_data_received  # type: ignore[method-assign,assignment]
    _imap.ImapConnection._send_fetch = _traced_send_fetch  # type: ignore[method-assign]
    _imap.ImapConnection.idle = _traced_idle  # type: ignore[method-assign]
    _imap.ImapConnection.fetch_after = _traced_fetch  # type: ignore[method-assign]
    _kafka.KafkaPublisher.publish_all = _traced_publish_all  # type: ignore[method-assign]

from producers.__main__ import main

sys.exit(main())
