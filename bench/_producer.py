"""`python -m bench._producer`: `python -m producers` plus benchmark-only variants, to measure a
recommended change in the real producer process without changing the producer. Variants come
from the environment:

BENCH_TLS_READ_BUFFER_BYTES=N  producers.limits.TLS_READ_BUFFER_BYTES = N
BENCH_PATCH_RELEASE=1          ImapConnection.abort() also cancels aioimaplib's IDLE renewal timer
                               and tasks, which otherwise keep every dropped connection alive for
                               up to ~30 min (docs/benchmarks.md, "reconnect leak")
BENCH_TRACE=1                  one stderr line per published batch with CLOCK_MONOTONIC times of
                               each hop: EXISTS read, IDLE ended (DONE answered), UID FETCH done,
                               Kafka send() returned, acknowledged ("bench-trace {json}")
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

if os.environ.get("BENCH_PATCH_RELEASE"):
    from producers._imap import ImapConnection

    _abort = ImapConnection.abort

    def _abort_and_release(self: ImapConnection) -> None:
        client = self._client
        if client._idle_waiter is not None:
            client._idle_waiter.cancel()
            client._idle_waiter = None
        for task in list(client.tasks):
            task.cancel()
        _abort(self)

    ImapConnection.abort = _abort_and_release  # type: ignore[method-assign]

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

from producers.__main__ import main

sys.exit(main())
