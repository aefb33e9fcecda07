"""Benchmark: numpy <-> ImageJ ImagePlus conversion speed (issue 2, item 8).

Moves a 16-bit stack (default 200 x 512 x 512, 100 MiB) into ImageJ with
``to_imageplus`` and back with ``from_imageplus``, and prints GB/s beside a plain
numpy copy (``a.copy()``, which also allocates its result) measured in the same run.
Each JVM setting runs in its own process (a JVM starts once per process).

    .venv/bin/python scripts/bench_convert.py                  # default JVM and tuned JVM
    .venv/bin/python scripts/bench_convert.py --single --heap 4g --jvm-option=-Xms2g

Times are medians over ``--repeats`` runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

PRESETS = {
    "JVM defaults": [],
    "-Xms2g -XX:+UseParallelGC": ["--jvm-option=-Xms2g", "--jvm-option=-XX:+UseParallelGC"],
    "-Xms1g -XX:+AlwaysPreTouch": ["--jvm-option=-Xms1g", "--jvm-option=-XX:+AlwaysPreTouch"],
}


def run_single(args: argparse.Namespace) -> dict:
    import numpy as np

    import ij_bridge

    if args.warm_memory:
        # This machine is a VM whose never-used guest memory is slow on first touch
        # (the host backs it lazily); touching and freeing some memory first measures
        # the steady state that a long-running session sees.
        warm = np.ones(int(args.warm_memory * 2**30), np.uint8)
        del warm
    t_start = time.perf_counter()
    ij_bridge.start(mode="headless", max_heap=args.heap, jvm_options=args.jvm_option)
    t_start = time.perf_counter() - t_start
    from ij_bridge.imagej.images import from_imageplus, to_imageplus

    rng = np.random.default_rng(0)
    a = rng.integers(0, 65536, size=tuple(args.shape), dtype=np.uint16)
    nbytes = a.nbytes
    t_np, t_in, t_out = [], [], []
    for i in range(args.repeats + 1):
        t0 = time.perf_counter()
        b = a.copy()
        t1 = time.perf_counter()
        imp = to_imageplus(a, dims=("z", "y", "x"))
        t2 = time.perf_counter()
        back = from_imageplus(imp)
        t3 = time.perf_counter()
        if i == 0:
            assert np.array_equal(back.values, a), "round trip changed the pixels"
            continue  # warm-up
        t_np.append(t1 - t0)
        t_in.append(t2 - t1)
        t_out.append(t3 - t2)
        del b, imp, back
    med = {k: statistics.median(v) for k, v in (("numpy", t_np), ("in", t_in), ("out", t_out))}
    return {
        "shape": list(a.shape), "dtype": str(a.dtype), "mib": nbytes / 2**20,
        "heap": args.heap, "jvm_options": args.jvm_option,
        "seconds": med, "start_seconds": t_start,
        "gb_per_s": {k: nbytes / v / 1e9 for k, v in med.items()},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", type=int, nargs=3, default=[200, 512, 512], metavar=("Z", "Y", "X"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--heap", default=None, help="JVM max heap, e.g. 4g")
    p.add_argument("--jvm-option", action="append", default=[], help="extra JVM option (repeatable)")
    p.add_argument("--warm-memory", type=float, default=0.0, metavar="GIB",
                   help="touch and free this much memory first (see run_single)")
    p.add_argument("--single", action="store_true", help="one run with the given settings, in this process")
    p.add_argument("--json", action="store_true", help="print the result as JSON (with --single)")
    args = p.parse_args(argv)
    if args.single:
        res = run_single(args)
        if args.json:
            print(json.dumps(res))
        else:
            g = res["gb_per_s"]
            print(f"{res['shape']} {res['dtype']} ({res['mib']:.0f} MiB): numpy copy {g['numpy']:.2f} GB/s, "
                  f"to_imageplus {g['in']:.2f} GB/s, from_imageplus {g['out']:.2f} GB/s")
        return
    common = ["--shape", *map(str, args.shape), "--repeats", str(args.repeats),
              "--warm-memory", str(args.warm_memory)]
    print(f"stack {args.shape} uint16, median of {args.repeats} runs (after 1 warm-up), GB/s = 1e9 bytes/s, "
          f"warm memory {args.warm_memory} GiB")
    print(f"{'JVM setting':30s} {'numpy copy':>13s} {'to_imageplus':>13s} {'from_imageplus':>15s} "
          f"{'JVM start':>10s}")
    for name, extra in PRESETS.items():
        out = subprocess.run([sys.executable, __file__, "--single", "--json", *common, *extra],
                             capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        g, s = res["gb_per_s"], res["seconds"]
        print(f"{name:30s} {g['numpy']:8.2f} GB/s {g['in']:8.2f} GB/s {g['out']:10.2f} GB/s "
              f"{res['start_seconds']:8.2f} s   (median ms: {s['numpy'] * 1e3:.0f} / {s['in'] * 1e3:.0f} / "
              f"{s['out'] * 1e3:.0f})")


if __name__ == "__main__":
    main()
