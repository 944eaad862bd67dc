"""`python -m bench.coincident RESULTS.json [...]`: the latency tail without coincident mail.

Deliveries are Poisson arrivals (~6/s over three kinds), so about 6 % of the deliveries of a run
have another one completing within 5 ms. Dovecot then un-hibernates two sessions at once on this
2-core machine and both deliveries are slow (35-40 ms against a 10 ms median).
With 500 samples per kind the p99 is the 5th-worst value, so whether two or three such pairs
happen to land on the producer's mailboxes or on the floor's decides much of the p99 gap.
This prints, per run, the p99 of all deliveries (what `bench.idle` judges) and of the
deliveries with no other delivery within `--window-ms` (default 5 ms) on either side.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)]


def analyse(results: dict[str, Any], window_s: float) -> dict[str, Any]:
    records = [x for x in results["deliveries"]["records"] if x["latency_ms"] is not None]
    records.sort(key=lambda x: x["t_ok"])
    alone: set[int] = set()
    for i, x in enumerate(records):
        before = records[i - 1]["t_ok"] if i > 0 else -math.inf
        after = records[i + 1]["t_ok"] if i + 1 < len(records) else math.inf
        if x["t_ok"] - before > window_s and after - x["t_ok"] > window_s:
            alone.add(id(x))
    out: dict[str, Any] = {}
    for kind in ("producer", "floor"):
        every = [x["latency_ms"] for x in records if x["kind"] == kind]
        solo = [x["latency_ms"] for x in records if x["kind"] == kind and id(x) in alone]
        if every and solo:
            out[kind] = {
                "n": len(every),
                "coincident": len(every) - len(solo),
                "p99": p99(every),
                "p99_alone": p99(solo),
            }
    if "producer" in out and "floor" in out:
        out["gap"] = round(out["producer"]["p99"] - out["floor"]["p99"], 1)
        out["gap_alone"] = round(out["producer"]["p99_alone"] - out["floor"]["p99_alone"], 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.coincident", description=__doc__)
    p.add_argument("results", nargs="+", help="bench.idle --json files")
    p.add_argument("--window-ms", type=float, default=5.0)
    args = p.parse_args(argv)
    for path in args.results:
        with open(path) as f:
            results = json.load(f)
        if "records" not in results.get("deliveries", {}):
            print(f"{path}: no per-delivery records (older results file)")
            continue
        res = analyse(results, args.window_ms / 1000)
        prod, floor = res.get("producer"), res.get("floor")
        if prod is None or floor is None:
            print(f"{path}: no producer or floor deliveries")
            continue
        print(
            f"{path}: p99 producer {prod['p99']:.1f} / floor {floor['p99']:.1f} ms, "
            f"gap {res['gap']:.1f}; without coincident deliveries "
            f"({prod['coincident']} producer, {floor['coincident']} floor left out) "
            f"{prod['p99_alone']:.1f} / {floor['p99_alone']:.1f} ms, gap {res['gap_alone']:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
