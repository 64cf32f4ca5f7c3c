#!/usr/bin/env python3
"""The cost of one sample at stack depth 8, on one thread and on two at once.

    python3 bench/sample_cost.py --build-dir build [--rounds 7] [--ops 200000]
                                 [--cg-ops 20000] [--threads 1,2] [--no-callgrind]
                                 [--mprof-lib PATH] [--json FILE]

bench_alloc's small loop (16 B-4 KiB malloc/free pairs) runs with every allocation made 8 frames
deep (--frames 8), under libmprof.so with every allocation sampled (MPROF_CONF=lg_prof_sample:0)
and with profiling inactive (MPROF_CONF=prof_active:false), the two runs interleaved, their order
alternating from round to round. Per sample:

  CPU          (process CPU time with sampling - without) / samples recorded, user + system of
               all threads over the loops (bench_alloc's cpu_seconds); median and interquartile
               range over the rounds. On 2 threads both threads sample at once: a lock or a
               shared cache line on the sampled path makes this dearer than on 1 thread.
  instructions (callgrind Ir of bench_loop and everything it calls, with sampling - without) /
               samples, --toggle-collect=bench_loop. Deterministic on one thread; on two,
               callgrind runs one thread at a time, so waits are not counted.
  where        the same two callgrind runs, self instructions per sample by function
               (callgrind_annotate), the largest first.

`samples` is the profiler's stats.samples over the loops: every allocation is sampled, so it
must be ops x threads, plus the few allocations of thread start-up in the same stretch (checked). Nothing here asserts a time. See docs/BENCHMARKS.md.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

FRAMES = 8


def quantile(xs, q):
    xs = sorted(xs)
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def result_row(text):
    for line in text.splitlines():
        if line.startswith("RESULT "):
            row = {}
            for tok in line.split()[1:]:
                k, _, v = tok.partition("=")
                try:
                    row[k] = float(v) if "." in v else int(v)
                except ValueError:
                    row[k] = v
            return row
    raise RuntimeError("no RESULT line in: " + text[-400:])


def env_for(lib, conf):
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "MPROF_CONF", "MALLOC_CONF")}
    env["LD_PRELOAD"] = lib
    env["MPROF_CONF"] = conf
    return env


ON, OFF = "lg_prof_sample:0", "prof_active:false"


def check_samples(n, pairs):
    """Every allocation of the loops is sampled; the counter also sees the few allocations of
    thread start-up inside the measured stretch."""
    if not pairs <= n <= pairs + 64:
        raise RuntimeError("expected %d samples with lg_prof_sample:0 (+ a few), got %s" % (pairs, n))


def run(cmd, env, cwd):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd, timeout=900)
    if r.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(cmd), r.returncode, r.stderr[-800:]))
    return r


def cpu_rounds(bench, lib, threads, ops, rounds, tmp):
    cmd = [bench, "--workload", "small", "--threads", str(threads), "--frames", str(FRAMES),
           "--ops", str(ops)]
    cpu, wall, samples, frames = [], [], [], None
    for r in range(rounds):
        t = {}
        for which in (("on", "off") if r % 2 == 0 else ("off", "on")):
            row = result_row(run(cmd, env_for(lib, ON if which == "on" else OFF), tmp).stdout)
            t[which] = row
            frames = row["frames"]
        n = t["on"]["samples"]
        check_samples(n, ops * threads)
        samples.append(n)
        cpu.append((t["on"]["cpu_seconds"] - t["off"]["cpu_seconds"]) * 1e9 / n)
        # the threads run side by side: wall time of the loops per sample of one thread
        wall.append((t["on"]["seconds"] - t["off"]["seconds"]) * 1e9 / ops)
    return dict(threads=threads, ops=ops, rounds=rounds, frames=frames, samples=samples,
                cpu_ns=cpu, wall_ns=wall, command=" ".join(cmd))


def callgrind(bench, lib, threads, ops, tmp):
    """Ir per sample (inclusive of bench_loop) and self Ir per sample by function."""
    cmd_tail = [bench, "--workload", "small", "--threads", str(threads), "--frames", str(FRAMES),
                "--ops", str(ops)]
    out = {}
    for which, conf in (("on", ON), ("off", OFF)):
        cg = os.path.join(tmp, "callgrind.%s.%d" % (which, threads))
        cmd = ["valgrind", "--tool=callgrind", "--toggle-collect=bench_loop",
               "--callgrind-out-file=" + cg] + cmd_tail
        r = run(cmd, env_for(lib, conf), tmp)
        row = result_row(r.stdout)
        ann = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", cg],
                             capture_output=True, text=True, check=True).stdout
        total, fns = None, {}
        for line in ann.splitlines():
            m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?PROGRAM TOTALS", line)
            if m:
                total = int(m.group(1).replace(",", ""))
                continue
            # self cost lines: "Ir (share) file:function [object]" (not the "=>" call lines)
            m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?([^=<*\s].*?)\s*$", line)
            if m and ":" in m.group(2) and total is not None:
                name = m.group(2)
                # a function's lines inlined from other files come without the object: merged
                fn = re.sub(r"\s*\[.*\]$", "", name).rsplit(":", 1)[-1]
                fns[fn] = fns.get(fn, 0) + int(m.group(1).replace(",", ""))
        out[which] = dict(total=total, fns=fns, samples=row["samples"])
    n = out["on"]["samples"]
    check_samples(n, ops * threads)
    per = (out["on"]["total"] - out["off"]["total"]) / n
    by_fn = {}
    for f in set(out["on"]["fns"]) | set(out["off"]["fns"]):
        d = (out["on"]["fns"].get(f, 0) - out["off"]["fns"].get(f, 0)) / n
        if abs(d) >= 0.5:
            by_fn[f] = d
    top = sorted(by_fn.items(), key=lambda kv: -kv[1])
    return dict(threads=threads, ops=ops, samples=n, ir_per_sample=per, by_function=top,
                command="valgrind --tool=callgrind --toggle-collect=bench_loop " + " ".join(cmd_tail))


def fmt_ns(xs):
    return "%.0f ns [%.0f, %.0f]" % (statistics.median(xs), quantile(xs, 0.25), quantile(xs, 0.75))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--mprof-lib", help="libmprof.so to measure (default: BUILD/libmprof.so)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--ops", type=int, default=200000, help="pairs per thread in the CPU runs")
    ap.add_argument("--cg-ops", type=int, default=20000, help="pairs per thread under callgrind")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--top", type=int, default=20, help="functions listed per callgrind run")
    ap.add_argument("--json", help="write the raw numbers here")
    a = ap.parse_args()
    build = os.path.abspath(a.build_dir)
    bench = os.path.join(build, "bench", "bench_alloc")
    lib = os.path.abspath(a.mprof_lib or os.path.join(build, "libmprof.so"))
    for p in (bench, lib):
        if not os.path.exists(p):
            sys.exit("sample_cost.py: %s not found (build first)" % p)
    threads = [int(t) for t in a.threads.split(",")]
    res = dict(lib=lib, frames=FRAMES, cpu=[], callgrind=[])
    with tempfile.TemporaryDirectory(prefix="mprof-sample-cost-") as tmp:
        for t in threads:
            c = cpu_rounds(bench, lib, t, a.ops, a.rounds, tmp)
            res["cpu"].append(c)
            print("CPU per sample, depth %d (measured %s frames), %d thread%s: %s (wall per sample "
                  "of one thread %s), %d rounds of %d pairs per thread" %
                  (FRAMES, c["frames"], t, "" if t == 1 else "s", fmt_ns(c["cpu_ns"]),
                   fmt_ns(c["wall_ns"]), a.rounds, a.ops), flush=True)
        if not a.no_callgrind:
            for t in threads:
                g = callgrind(bench, lib, t, a.cg_ops, tmp)
                res["callgrind"].append(g)
                print("instructions per sample, %d thread%s: %.0f (callgrind, %d samples)" %
                      (t, "" if t == 1 else "s", g["ir_per_sample"], g["samples"]), flush=True)
                for f, d in g["by_function"][:a.top]:
                    print("  %8.1f  %s" % (d, f))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
