"""`python -m bench.hops RESULTS.json`: where the producer's latency goes, hop by hop.

Needs a `bench.idle` run with `--variant trace`: the producer then logs CLOCK_MONOTONIC times of
each wake-up (EXISTS read, IDLE ended, UID FETCH done, publish started, acknowledged), and the
results file has each delivery's APPEND OK time on the same clock. Deliveries are matched to
trace lines by mailbox (the first EXISTS read after the APPEND's OK, within 50 ms before it).

    exists      APPEND OK -> the producer read `* N EXISTS`   (what the floor measures)
    idle_done   -> DONE answered (IDLE's tagged OK; the UID FETCH went out in the same write),
                   split into: to_send (EXISTS read -> DONE + UID FETCH written),
                   server (-> first bytes back), back (-> IDLE's OK handled, idle() returned)
    fetch       -> UID FETCH response parsed
    to_publish  -> events built, publish_all() entered
    ack         -> Kafka acknowledged (acks=all)
    readable    publish_all() entered -> record returned to the benchmark's consumer
"""

from __future__ import annotations

import json
import sys
from typing import Any

HOPS = (
    "exists",
    "idle_done",
    "to_send",
    "server",
    "back",
    "fetch",
    "to_publish",
    "ack",
    "readable",
    "total",
)


def rows(results: dict[str, Any], until_wall: float | None = None) -> list[dict[str, float]]:
    traces: dict[str, list[dict[str, Any]]] = {}
    with open(results["producer_log"], errors="replace") as f:
        for line in f:
            if line.startswith("bench-trace "):
                d = json.loads(line[len("bench-trace ") :])
                if "exists" in d:
                    traces.setdefault(d["mailbox_id"], []).append(d)
    out = []
    for x in results["deliveries"]["records"]:
        if x["kind"] != "producer" or x["latency_ms"] is None or x.get("t_ok") is None:
            continue
        if until_wall is not None and x["wall_ok"] > until_wall:
            continue
        t0 = x["t_ok"]
        cands = [d for d in traces.get(f"bench:{x['user']}", []) if d["exists"] > t0 - 0.05]
        if not cands:
            continue
        d = min(cands, key=lambda d: d["exists"])
        idle_done = d.get("idle_done", d["exists"])
        sent, rx = d.get("done_sent", d["exists"]), d.get("first_rx", idle_done)
        out.append(
            {
                "exists": (d["exists"] - t0) * 1e3,
                "idle_done": (idle_done - d["exists"]) * 1e3,
                "to_send": (sent - d["exists"]) * 1e3,
                "server": (rx - sent) * 1e3,
                "back": (idle_done - rx) * 1e3,
                "fetch": (d["fetched"] - idle_done) * 1e3,
                "to_publish": (d["publish"] - d["fetched"]) * 1e3,
                "ack": (d["acked"] - d["publish"]) * 1e3,
                "readable": x["latency_ms"] - (d["publish"] - t0) * 1e3,
                "total": x["latency_ms"],
            }
        )
    return out


def _pct(v: list[float], p: int) -> float:
    v = sorted(v)
    return v[max(0, min(len(v), -(-len(v) * p // 100)) - 1)]


def main(argv: list[str]) -> int:
    with open(argv[0]) as f:
        results = json.load(f)
    until = float(argv[1]) if len(argv) > 1 else None  # wall clock: ignore later deliveries
    rs = rows(results, until)
    n = sum(1 for x in results["deliveries"]["records"] if x["kind"] == "producer")
    print(f"{len(rs)} of {n} producer deliveries matched to trace lines")
    if not rs:
        return 1
    for k in HOPS:
        v = [r[k] for r in rs]
        print(
            f"  {k:10} p50 {_pct(v, 50):7.2f}  p90 {_pct(v, 90):7.2f}  p99 {_pct(v, 99):7.2f}"
            f"  max {max(v):8.2f} ms"
        )
    print("  slowest:")
    for r in sorted(rs, key=lambda r: -r["total"])[:6]:
        print("   ", "  ".join(f"{k} {r[k]:.1f}" for k in HOPS))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
