#!/usr/bin/env python3
"""mimalloc-bench's programs under both libraries of mprof and their own allocators.

    python3 bench/mimalloc_bench.py --bench-dir DIR [--build-dir build] [--rounds 3]
                                    [--tests cfrac,espresso,...] [--callgrind mstress,...]
                                    [--json FILE]

mimalloc-bench (github.com/daanx/mimalloc-bench, the public allocator benchmark suite) is not part
of this repository and is never committed: check it out anywhere and build its programs with its
own CMake, e.g.

    git clone https://github.com/daanx/mimalloc-bench /work/mbench
    cmake -S /work/mbench/bench -B /work/mbench/build -DCMAKE_BUILD_TYPE=Release
    make -C /work/mbench/build cfrac espresso barnes larson alloc-test cache-scratch \\
         cache-thrash xmalloc-test mstress rptest glibc-simple glibc-thread

(its shbench sources are downloaded by its own setup script and its `security` directory needs
more: drop sh6bench/sh8bench and `add_subdirectory(security)` from bench/CMakeLists.txt if they
do not configure). --bench-dir is that build directory; the inputs are taken from its sources
(../bench next to it, or --src). Programs that did not build are skipped and listed.

Configurations, all preloaded into the unmodified programs:
  mimalloc        BUILD/bench/libmimalloc-plain.so: the same mimalloc source as libmprof.so
                  without the profiler (the baseline of libmprof.so)
  mprof           BUILD/libmprof.so at the default rate (MPROF_CONF empty: 512 KiB)
  jemalloc        BUILD/jemalloc/lib/libjemalloc.so.2: the jemalloc 5.3.0 that libmprof-jemalloc.so
                  is built from, built with --enable-prof and not profiling (its baseline)
  jemalloc-prof   the same with MALLOC_CONF=prof:true,lg_prof_sample:19: jemalloc's own profiler
                  at the same mean rate
  mprof-jemalloc  BUILD/libmprof-jemalloc.so at the default rate

Every round runs every program under every configuration, the order of the configurations
rotating from round to round. The measure is the process's CPU time (user + system, of all its
threads: wait4's rusage), or for the programs that run for a fixed time and report their own
throughput, CPU time per unit of the work they report (larson, xmalloc-test, glibc-thread). Each profiler configuration is divided by its own
allocator (mprof, mprof-jemalloc and jemalloc-prof by mimalloc, jemalloc and jemalloc) in the same
round; the table gives the median ratio over the rounds [min, max]. --callgrind names programs to
run once more under callgrind in every configuration: whole-run instruction counts, deterministic
up to thread interleaving. Nothing here asserts a time. See docs/BENCHMARKS.md.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

NPROC = os.cpu_count() or 2


def tests(src):
    """name -> (argv, stdin file or None, measure); argv[0] is the program in --bench-dir. The
    arguments are mimalloc-bench's own (its bench.sh) with procs = the number of CPUs."""
    n = str(NPROC)
    return {
        "cfrac": (["cfrac", "17545186520507317056371138836327483792789528"], None, "cpu"),
        "espresso": (["espresso", os.path.join(src, "espresso", "largest.espresso")], None, "cpu"),
        "barnes": (["barnes"], os.path.join(src, "barnes", "input"), "cpu"),
        "larsonN": (["larson", "5", "8", "1000", "5000", "100", "4141", n], None,
                    ("per_work", r"Throughput =\s+(\d+) operations per second")),
        "alloc-test1": (["alloc-test", "1"], None, "cpu"),
        "alloc-testN": (["alloc-test", n], None, "cpu"),
        "cache-scratch1": (["cache-scratch", "1", "1000", "1", "2000000", n], None, "cpu"),
        "cache-scratchN": (["cache-scratch", n, "1000", "1", "2000000", n], None, "cpu"),
        "cache-thrash1": (["cache-thrash", "1", "1000", "1", "2000000", n], None, "cpu"),
        "cache-thrashN": (["cache-thrash", n, "1000", "1", "2000000", n], None, "cpu"),
        "xmalloc-testN": (["xmalloc-test", "-w", n, "-t", "5", "-s", "64"], None,
                          ("per_work", r"free/sec:\s+([\d.]+) M")),
        "mstressN": (["mstress", n, "50", "25"], None, "cpu"),
        "rptestN": (["rptest", n, "0", "1", "2", "500", "1000", "100", "8", "16000"], None, "cpu"),
        "glibc-simple": (["glibc-simple"], None, "cpu"),
        "glibc-thread": (["glibc-thread", n], None, ("per_work", r"(\d+) iterations")),
    }


DEFAULT_TESTS = ("cfrac,espresso,barnes,larsonN,alloc-test1,cache-scratch1,cache-scratchN,"
                 "cache-thrash1,cache-thrashN,xmalloc-testN,mstressN,rptestN,glibc-simple,"
                 "glibc-thread")

PAIRS = (("mprof", "mimalloc"), ("mprof-jemalloc", "jemalloc"), ("jemalloc-prof", "jemalloc"))


def configs(build):
    mi = os.path.join(build, "bench", "libmimalloc-plain.so")
    je = os.path.join(build, "jemalloc", "lib", "libjemalloc.so.2")
    return {
        "mimalloc": {"LD_PRELOAD": mi},
        "mprof": {"LD_PRELOAD": os.path.join(build, "libmprof.so"), "MPROF_CONF": ""},
        "jemalloc": {"LD_PRELOAD": je},
        "jemalloc-prof": {"LD_PRELOAD": je, "MALLOC_CONF": "prof:true,lg_prof_sample:19"},
        "mprof-jemalloc": {"LD_PRELOAD": os.path.join(build, "libmprof-jemalloc.so"),
                           "MPROF_CONF": ""},
    }


def env_for(conf):
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "MPROF_CONF", "MALLOC_CONF", "MIMALLOC_VERBOSE")}
    env.update(conf)
    return env


def run_once(argv, stdin, conf, cwd):
    """(user+sys seconds of the child and its threads, stdout)."""
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as fin:
        p = subprocess.Popen(argv, stdin=fin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env=env_for(conf), cwd=cwd)
        # read everything, then reap with wait4 for the child's own rusage
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    text = out.decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError("%s exited %d under %s: %s" % (" ".join(argv), p.returncode, conf,
                                                         text[-400:]))
    return ru.ru_utime + ru.ru_stime, text


def measure(kind, cpu, text):
    if kind == "cpu":
        return cpu
    how, pat = kind
    m = re.findall(pat, text)
    if not m:
        raise RuntimeError("no match for %r in output: %s" % (pat, text[-300:]))
    work = float(m[-1])
    return cpu / work


def callgrind_ir(argv, stdin, conf, cwd):
    out = os.path.join(cwd, "callgrind.out")
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] + argv
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as fin:
        r = subprocess.run(cmd, stdin=fin, capture_output=True, env=env_for(conf), cwd=cwd)
    if r.returncode != 0:
        raise RuntimeError("callgrind %s: %s" % (" ".join(argv), r.stderr.decode()[-400:]))
    ir = 0
    with open(out) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                ir = int(line.split()[1])
    os.unlink(out)
    return ir


def save(path, res):
    """Written after every program, so that an interrupted run keeps what it measured."""
    if path:
        with open(path, "w") as f:
            json.dump(res, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench-dir", required=True, help="mimalloc-bench's build directory")
    ap.add_argument("--src", help="mimalloc-bench's bench/ sources (default: BENCH_DIR/../bench)")
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tests", default=DEFAULT_TESTS)
    ap.add_argument("--configs", default="mimalloc,mprof,jemalloc,jemalloc-prof,mprof-jemalloc")
    ap.add_argument("--callgrind", default="",
                    help="programs to count instructions of (slow: about 50 times the CPU time, "
                         "per configuration)")
    ap.add_argument("--json")
    a = ap.parse_args()
    bdir = os.path.abspath(a.bench_dir)
    src = os.path.abspath(a.src or os.path.join(bdir, "..", "bench"))
    build = os.path.abspath(a.build_dir)
    allconf = configs(build)
    names = [c for c in a.configs.split(",") if c]
    for c in names:
        lib = allconf[c]["LD_PRELOAD"]
        if not os.path.exists(lib):
            sys.exit("mimalloc_bench.py: %s not found (build first)" % lib)
    table = tests(src)
    chosen, skipped = [], []
    for t in a.tests.split(","):
        argv = table[t][0]
        (chosen if os.access(os.path.join(bdir, argv[0]), os.X_OK) else skipped).append(t)
    if skipped:
        print("not built, skipped: " + ", ".join(skipped))
    res = dict(bench_dir=bdir, build=build, rounds=a.rounds, load_before=os.getloadavg(),
               started=time.strftime("%Y-%m-%dT%H:%M:%S"), tests={})
    with tempfile.TemporaryDirectory(prefix="mprof-mbench-") as tmp:
        for t in chosen:
            argv, stdin, kind = table[t]
            argv = [os.path.join(bdir, argv[0])] + argv[1:]
            vals = {c: [] for c in names}
            try:
                for r in range(a.rounds):
                    order = names[r % len(names):] + names[:r % len(names)]
                    for c in order:
                        cpu, text = run_once(argv, stdin, allconf[c], tmp)
                        vals[c].append(measure(kind, cpu, text))
            except RuntimeError as e:  # a program that fails is reported, the others still run
                print("%-15s failed: %s" % (t, e), flush=True)
                res["tests"][t] = dict(error=str(e))
                continue
            ratios = {}
            for prof, base in PAIRS:
                if prof in vals and base in vals:
                    rs = [p / b for p, b in zip(vals[prof], vals[base])]
                    ratios[prof] = dict(median=statistics.median(rs), min=min(rs), max=max(rs),
                                        all=rs)
            res["tests"][t] = dict(command=" ".join([os.path.basename(argv[0])] + argv[1:]),
                                   measure=kind if kind == "cpu" else kind[0], values=vals,
                                   ratios=ratios)
            save(a.json, res)
            print("%-15s %s" % (t, "  ".join(
                "%s %+.1f %% [%+.1f, %+.1f]" % (p, (v["median"] - 1) * 100, (v["min"] - 1) * 100,
                                                 (v["max"] - 1) * 100)
                for p, v in ratios.items())), flush=True)
        cg = [t for t in a.callgrind.split(",") if t]
        res["callgrind"] = {}
        for t in cg:
            if t not in chosen:
                continue
            argv, stdin, _ = table[t]
            argv = [os.path.join(bdir, argv[0])] + argv[1:]
            ir = {c: callgrind_ir(argv, stdin, allconf[c], tmp) for c in names}
            res["callgrind"][t] = ir
            save(a.json, res)
            print("%-15s instructions: %s" % (t, "  ".join(
                "%s %+.2f %%" % (p, (ir[p] / ir[b] - 1) * 100)
                for p, b in PAIRS if p in ir and b in ir)), flush=True)
    res["load_after"] = os.getloadavg()
    save(a.json, res)


if __name__ == "__main__":
    main()
