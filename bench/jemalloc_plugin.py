#!/usr/bin/env python3
"""The benchmark suite (bench/run.py) pointed at libmprof-jemalloc.so.

    python3 bench/jemalloc_plugin.py [--quick] [--build-dir build] [--results DIR]

Runs the same measurements as bench/run.py, with the allocators swapped so that every comparison
is on the same jemalloc code: the baseline is the plain libjemalloc.so.2 built next to the
plugin from the same source and configure options (BUILD/jemalloc/lib/libjemalloc.so.2), the
"mprof" configurations are libmprof-jemalloc.so, and jemalloc's own profiler is that plain
library with MALLOC_CONF=prof:true,... . tcmalloc is left out. Writes the results JSON and prints
the figures docs/BENCHMARKS.md quotes for the jemalloc targets (no docs are rewritten).
"""
import argparse
import datetime
import json
import os
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
sys.dont_write_bytecode = True
import run  # noqa: E402  (bench/run.py)


class JemallocSuite(run.Suite):
    def __init__(self, args, plain):
        super().__init__(args)
        self.libs = dict(mimalloc=plain, jemalloc=plain, tcmalloc=None, tcmalloc_minimal=None)
        self.data["libs"] = dict(self.libs, mprof=self.libmprof)

    def tcmalloc_check(self):
        pass

    def problem(self, msg):
        if "tcmalloc" in msg:
            return
        super().problem(msg)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", dest="mode", action="store_const", const="quick", default="full")
    ap.add_argument("--build-dir", default=os.path.join(run.REPO, "build"))
    ap.add_argument("--results", default=os.path.join(BENCH_DIR, "results", "jemalloc"))
    args = ap.parse_args()
    args.build_dir = os.path.abspath(args.build_dir)
    args.mprof_lib = os.path.join(args.build_dir, "libmprof-jemalloc.so")
    args.command_line = " ".join(["python3 bench/jemalloc_plugin.py"] + sys.argv[1:])
    plain = os.path.join(args.build_dir, "jemalloc", "lib", "libjemalloc.so.2")
    for f in (args.mprof_lib, plain):
        if not os.path.exists(f):
            sys.exit("bench: %s not built" % f)
    suite = JemallocSuite(args, plain)
    suite.run_all()
    os.makedirs(args.results, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(args.results, "results-%s-%s.json" % (suite.mode, stamp))
    with open(path, "w") as f:
        json.dump(suite.data, f, indent=1)
    d = suite.data
    print("\n# libmprof-jemalloc.so (%s mode): %s" % (suite.mode, path))
    print("\n## Overhead (median ratio to plain jemalloc built from the same source)")
    for wl, e in d.get("overhead", {}).items():
        cells = []
        for name, r in e["ratios"].items():
            if r is not None:
                cells.append("%s x%.3f" % (name, r["median"]))
        print("- %s: %s" % (e["label"], ", ".join(cells)))
    print("\n## callgrind: instructions per malloc/free pair")
    for row in d.get("callgrind", {}).get("rows", []):
        extra = row.get("extra_per_pair")
        print("- %s: %.2f%s" % (row["label"], row["ir_per_pair"],
                                "" if extra is None else " (%+.2f vs baseline)" % extra))
    print("\n## One sample, ns (median) by depth")
    for prof, byd in d.get("sample_cost", {}).items():
        print("- %s: %s" % (prof, ", ".join("d%s=%.0f (frames %s)" % (k, v["median"], v["frames"])
                                             for k, v in byd.items())))
    print("\n## Scale")
    for name, r in d.get("scale", {}).items():
        lat = r.get("latency", {})
        print("- %s:" % name)
        for st in r.get("stages", []):
            print("  %d stacks: dump %.1f ms, epoch median %d ns, metadata %s" % (
                st["stacks"], st["dump_ns_median"] / 1e6, st["epoch_ns_median"], st["metadata_bytes"]))
        for phase, row in lat.items():
            print("  latency %s: max %.2f ms, blocked %s, preempted %s, max not preempted %.3f ms" % (
                phase, row["max_ns"] / 1e6, row.get("slow_blocked"), row.get("slow_preempted"),
                row.get("max_not_preempted_ns", 0) / 1e6))
    for p in d.get("problems", []):
        print("NOTE: " + p)


if __name__ == "__main__":
    main()
