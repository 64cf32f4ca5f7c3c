#!/usr/bin/env python3
"""The mprof benchmark suite: runs every benchmark, writes bench/results/ and docs/BENCHMARKS.md.

    bench/run.sh [--quick | --smoke] [options]     (run.sh installs packages, then runs this)

Modes: full (default, ~15 minutes), --quick (under a minute, smaller runs, fewer rounds), --smoke
(a few seconds, only workloads that need no extra packages; used by the ctest `bench.smoke`).
Every timing compares a configuration with its baseline measured in the same invocation, in
interleaved rounds (A B C A B C ...), and reports the median of the per-round ratios with the
interquartile range. Nothing here asserts a time: the smoke mode checks only that each step runs
and that its output parses.
"""
import argparse
import datetime
import glob
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)

# Per-mode sizes. Ops are per thread; rounds are interleaved repetitions of every configuration.
MODES = {
    "full": dict(rounds=15, real_rounds=7, warmup=True, ops_small=2_000_000, ops_large=20_000,
                 ops_realloc=300_000, ops_deep=500_000, cost_ops=100_000, cost_rounds=7,
                 stacks=100_000, dumps=5, cg_ops=(100_000, 300_000), sqlite_rows=200_000,
                 py_scale=8000, depths=(8, 16, 32, 64, 128), thread_rounds=15, threads=400,
                 thread_ops=200_000, ops_threads=20_000),
    "quick": dict(rounds=3, real_rounds=2, warmup=False, ops_small=300_000, ops_large=3000,
                  ops_realloc=60_000, ops_deep=150_000, cost_ops=20_000, cost_rounds=3,
                  stacks=10_000, dumps=2, cg_ops=(20_000, 60_000), sqlite_rows=20_000,
                  py_scale=800, depths=(8, 32, 128), thread_rounds=5, threads=400,
                  thread_ops=50_000, ops_threads=5000),
    "smoke": dict(rounds=1, real_rounds=0, warmup=False, ops_small=20_000, ops_large=200,
                  ops_realloc=20_000, ops_deep=10_000, cost_ops=2000, cost_rounds=1,
                  stacks=1000, dumps=1, cg_ops=None, sqlite_rows=0, py_scale=0,
                  depths=(8, 32), thread_rounds=1, threads=40, thread_ops=2000, ops_threads=500),
}

# Environment variables of the allocators compared: cleared before every run, then set per config.
ALLOC_VARS = ("LD_PRELOAD", "MPROF_CONF", "MALLOC_CONF", "TCMALLOC_SAMPLE_PARAMETER",
              "HEAPPROFILE", "PYTHONMALLOC", "MIMALLOC_VERBOSE", "BENCH_STATDUMP")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def find_lib(name):
    """The path of a system shared library (e.g. libjemalloc.so.2), or None."""
    for d in ("/usr/lib/*-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/*-linux-gnu"):
        hits = sorted(glob.glob(os.path.join(d, name)))
        if hits:
            return hits[0]
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
        m = re.search(r"\s%s \(.*\) => (\S+)" % re.escape(name), out)
        if m:
            return m.group(1)
    except OSError:
        pass
    return None


def parse_results(text):
    """RESULT lines -> list of dicts (numbers converted)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("RESULT "):
            continue
        row = {}
        for tok in line.split()[1:]:
            k, _, v = tok.partition("=")
            try:
                row[k] = int(v)
            except ValueError:
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = v
        rows.append(row)
    return rows


def quantile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(xs):
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return None
    return dict(median=statistics.median(xs), p25=quantile(xs, 0.25), p75=quantile(xs, 0.75),
                min=min(xs), max=max(xs), n=len(xs))


class Suite:
    def __init__(self, args):
        self.args = args
        self.mode = args.mode
        self.p = MODES[self.mode]
        self.build = os.path.abspath(args.build_dir)
        self.results = os.path.abspath(args.results)
        self.tmp = os.path.join(self.results, "tmp")
        os.makedirs(self.tmp, exist_ok=True)
        self.data = dict(mode=self.mode, started=datetime.datetime.now().isoformat(timespec="seconds"),
                         command=args.command_line, problems=[])
        self.bin = lambda name: os.path.join(self.build, "bench", name)
        self.libmprof = os.path.abspath(args.mprof_lib or os.path.join(self.build, "libmprof.so"))
        # The baseline is the same mimalloc source as libmprof.so built without the profiler
        # (bench/CMakeLists.txt: libmimalloc-plain.so); Debian's prebuilt libmimalloc.so.2 is an
        # extra comparison when installed.
        plain = os.path.join(self.build, "bench", "libmimalloc-plain.so")
        self.libs = dict(mimalloc=plain if os.path.exists(plain) else None,
                         mimalloc_debian=find_lib("libmimalloc.so.2"), jemalloc=find_lib("libjemalloc.so.2"),
                         tcmalloc=find_lib("libtcmalloc.so.4"),
                         tcmalloc_minimal=find_lib("libtcmalloc_minimal.so.4"))
        self.data["libs"] = dict(self.libs, mprof=self.libmprof)

    # -- running ----------------------------------------------------------------------------
    def env_for(self, conf, extra=None):
        env = {k: v for k, v in os.environ.items() if k not in ALLOC_VARS}
        env.update(conf["env"])
        if extra:
            env.update(extra)
        return env

    def run(self, cmd, conf, stdin=None, extra_env=None, timeout=600):
        """Runs cmd under a configuration; returns (wall seconds, stdout, stderr)."""
        env = self.env_for(conf, extra_env)
        with open(stdin, "rb") if stdin else open(os.devnull, "rb") as fin:
            t0 = time.perf_counter()
            try:
                r = subprocess.run(cmd, env=env, stdin=fin, capture_output=True, cwd=self.tmp,
                                   timeout=timeout)
            except subprocess.TimeoutExpired:
                raise RuntimeError("timeout: %s under %s" % (" ".join(cmd), conf["name"]))
            wall = time.perf_counter() - t0
        out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        if r.returncode != 0:
            raise RuntimeError("%s under %s exited %d: %s" % (" ".join(cmd), conf["name"],
                                                            r.returncode, err[-800:]))
        return wall, out, err

    def run_rss(self, cmd, conf, stdin=None, extra_env=None, timeout=600):
        """Runs cmd through bench_exec, which times it and reads its own peak RSS (a child of
        this Python process would report at least Python's RSS: Linux keeps ru_maxrss across
        exec). Returns (wall seconds, maxrss KiB, stdout, stderr)."""
        env = self.env_for(conf, extra_env)
        env["BENCH_CHILD_LD_PRELOAD"] = env.pop("LD_PRELOAD", "")
        res = os.path.join(self.tmp, "exec.txt")
        if os.path.exists(res):
            os.unlink(res)
        with open(stdin, "rb") if stdin else open(os.devnull, "rb") as fin:
            try:
                r = subprocess.run([self.bin("bench_exec"), res, "--"] + cmd, env=env, stdin=fin,
                                   capture_output=True, cwd=self.tmp, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise RuntimeError("timeout: %s under %s" % (" ".join(cmd), conf["name"]))
        out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        rows = parse_results(open(res).read()) if os.path.exists(res) else []
        if r.returncode != 0 or not rows:
            raise RuntimeError("%s under %s exited %d: %s" % (" ".join(cmd), conf["name"],
                                                            r.returncode, err[-800:]))
        self.last_cpu = rows[0]["cpu_ns"] / 1e9
        return rows[0]["wall_ns"] / 1e9, rows[0]["maxrss_kib"], out, err

    # -- configurations -----------------------------------------------------------------------
    def configs(self):
        L = self.libs
        mp = self.libmprof
        c = []

        def add(name, label, group, env, base=False):
            c.append(dict(name=name, label=label, group=group, env=env, base=base))

        if L["mimalloc"]:
            add("mimalloc", "mimalloc", "mimalloc", {"LD_PRELOAD": L["mimalloc"]}, base=True)
        if L["mimalloc_debian"]:
            add("mimalloc-debian", "mimalloc (Debian build)", "mimalloc",
                {"LD_PRELOAD": L["mimalloc_debian"]})
        add("mprof-512k", "mprof 512 KiB", "mimalloc", {"LD_PRELOAD": mp, "MPROF_CONF": ""})
        add("mprof-64k", "mprof 64 KiB", "mimalloc",
            {"LD_PRELOAD": mp, "MPROF_CONF": "lg_prof_sample:16"})
        add("mprof-inactive", "mprof prof_active:false", "mimalloc",
            {"LD_PRELOAD": mp, "MPROF_CONF": "prof_active:false"})
        if self.mode != "smoke" and L["jemalloc"]:
            add("jemalloc", "jemalloc", "jemalloc", {"LD_PRELOAD": L["jemalloc"]}, base=True)
            add("jemalloc-512k", "jemalloc prof 512 KiB", "jemalloc",
                {"LD_PRELOAD": L["jemalloc"], "MALLOC_CONF": "prof:true,lg_prof_sample:19"})
            add("jemalloc-64k", "jemalloc prof 64 KiB", "jemalloc",
                {"LD_PRELOAD": L["jemalloc"], "MALLOC_CONF": "prof:true,lg_prof_sample:16"})
        if self.mode != "smoke" and L["tcmalloc"]:
            add("tcmalloc", "tcmalloc", "tcmalloc", {"LD_PRELOAD": L["tcmalloc"]}, base=True)
            add("tcmalloc-512k", "tcmalloc sampler 512 KiB", "tcmalloc",
                {"LD_PRELOAD": L["tcmalloc"], "TCMALLOC_SAMPLE_PARAMETER": "524288"})
            add("tcmalloc-64k", "tcmalloc sampler 64 KiB", "tcmalloc",
                {"LD_PRELOAD": L["tcmalloc"], "TCMALLOC_SAMPLE_PARAMETER": "65536"})
        if not L["mimalloc"]:
            self.problem("libmimalloc-plain.so not built: mprof has no baseline")
        for lib in ("jemalloc", "tcmalloc"):
            if self.mode != "smoke" and not L[lib]:
                self.problem("%s not installed: its configurations are skipped "
                             "(bench/install-deps.sh installs it)" % lib)
        return c

    def problem(self, msg):
        log("bench: NOTE: " + msg)
        self.data["problems"].append(msg)

    # -- workloads ----------------------------------------------------------------------------
    def workloads(self):
        p = self.p
        ba = self.bin("bench_alloc")
        w = [
            dict(name="mt-small", label="2 threads, 16 B-4 KiB",
                 cmd=[ba, "--workload", "small", "--threads", "2", "--ops", str(p["ops_small"])]),
            dict(name="st-small", label="1 thread, 16 B-4 KiB",
                 cmd=[ba, "--workload", "small", "--threads", "1", "--ops", str(p["ops_small"])]),
            dict(name="large", label="64 KiB-8 MiB",
                 cmd=[ba, "--workload", "large", "--threads", "1", "--ops", str(p["ops_large"])]),
            dict(name="realloc", label="realloc growth",
                 cmd=[ba, "--workload", "realloc", "--threads", "1", "--ops", str(p["ops_realloc"])]),
            dict(name="deep-64", label="16 B-4 KiB at depth 64",
                 cmd=[ba, "--workload", "small", "--threads", "1", "--frames", "64", "--ops",
                      str(p["ops_deep"])]),
            # Many threads alive at once, each sampling (about 80 samples per thread at 512 KiB in
            # the full mode), little heap each: for the peak RSS that per-thread state costs.
            dict(name="threads-64", label="64 threads, 64 live blocks each",
                 cmd=[ba, "--workload", "small", "--threads", "64", "--live", "64", "--ops",
                      str(p["ops_threads"])]),
        ]
        if p["sqlite_rows"] and shutil.which("sqlite3"):
            sql = os.path.join(self.tmp, "sqlite.sql")
            with open(os.path.join(BENCH_DIR, "workloads", "sqlite.sql")) as f:
                text = f.read().replace("@ROWS@", str(p["sqlite_rows"]))
            with open(sql, "w") as f:
                f.write(text)
            w.append(dict(name="sqlite3", label="sqlite3 %dk rows" % (p["sqlite_rows"] // 1000),
                          cmd=[shutil.which("sqlite3"), ":memory:"], stdin=sql, real=True,
                          empty=[shutil.which("sqlite3"), ":memory:", "select 1"]))
        elif p["sqlite_rows"]:
            self.problem("sqlite3 not installed: the sqlite3 workload is skipped")
        py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else None
        if p["py_scale"] and py:
            script = os.path.join(BENCH_DIR, "workloads", "alloc_heavy.py")
            w.append(dict(name="python3", label="python3 (pymalloc)", real=True,
                          cmd=[py, script, str(p["py_scale"])], empty=[py, "-c", "pass"]))
            w.append(dict(name="python3-malloc", label="python3 PYTHONMALLOC=malloc", real=True,
                          cmd=[py, script, str(p["py_scale"])], empty=[py, "-c", "pass"],
                          env={"PYTHONMALLOC": "malloc"}))
        if self.args.workloads:
            names = self.args.workloads.split(",")
            unknown = [n for n in names if n not in [x["name"] for x in w]]
            if unknown:
                sys.exit("bench: unknown or unavailable workload(s) %s (workloads: %s)"
                         % (", ".join(unknown), ", ".join(x["name"] for x in w)))
            w = [x for x in w if x["name"] in names]
        return w

    # -- 1. overhead by workload ------------------------------------------------------------------
    def bench_overhead(self):
        confs = self.configs()
        self.data["configs"] = [dict(name=c["name"], label=c["label"], group=c["group"], base=c["base"],
                                     env=c["env"]) for c in confs]
        res = {}
        for wl in self.workloads():
            real = wl.get("real", False)
            rounds = self.p["real_rounds"] if real else self.p["rounds"]
            if rounds == 0:
                continue
            log("bench: overhead %-15s %d configs x %d rounds" % (wl["name"], len(confs), rounds))
            runs = {c["name"]: [] for c in confs}
            samples = {c["name"]: [] for c in confs}
            total_rounds = rounds + (1 if self.p["warmup"] else 0)
            groups = []
            for c in confs:
                g = next((g for g in groups if g[0]["group"] == c["group"]), None)
                if g is None:
                    groups.append([c])
                else:
                    g.append(c)
            for r in range(total_rounds):
                # A B C A B C ...: each group (an allocator and its profiler configurations) runs
                # back to back, so a configuration and its baseline are seconds apart; the order
                # rotates from round to round so that no configuration always goes first.
                k = r % len(groups)
                order = []
                for g in groups[k:] + groups[:k]:
                    j = r % len(g)
                    gg = g[j:] + g[:j]
                    order += gg[::-1] if r % 2 else gg
                for c in order:
                    wall, rss, out, _ = self.run_rss(wl["cmd"], c, stdin=wl.get("stdin"),
                                                     extra_env=wl.get("env"))
                    if self.p["warmup"] and r == 0:
                        continue
                    if real:
                        t, cpu = wall, self.last_cpu
                    else:
                        rows = parse_results(out)
                        if not rows or "seconds" not in rows[0]:
                            raise RuntimeError("no RESULT from %s" % wl["name"])
                        t, cpu = rows[0]["seconds"], rows[0]["cpu_seconds"]
                        samples[c["name"]].append((rows[0].get("samples", -1),
                                                   rows[0].get("expected_samples", -1)))
                    runs[c["name"]].append(dict(seconds=t, cpu_seconds=cpu, maxrss_kib=rss))
            entry = dict(label=wl["label"], real=real, cmd=wl["cmd"], runs=runs, samples=samples,
                         ratios={})
            for c in confs:
                base = next((b for b in confs if b["group"] == c["group"] and b["base"]), None)
                if base is None or c["base"]:
                    continue
                ratios = [a["seconds"] / b["seconds"] for a, b in zip(runs[c["name"]], runs[base["name"]])]
                entry["ratios"][c["name"]] = dict(summary(ratios), base=base["name"], all=ratios)
                cr = [a["cpu_seconds"] / b["cpu_seconds"] for a, b in zip(runs[c["name"]], runs[base["name"]])]
                entry.setdefault("cpu_ratios", {})[c["name"]] = dict(summary(cr), base=base["name"], all=cr)
            for c in confs:
                entry.setdefault("time", {})[c["name"]] = summary([x["seconds"] for x in runs[c["name"]]])
                entry.setdefault("rss", {})[c["name"]] = summary([x["maxrss_kib"] for x in runs[c["name"]]])
            res[wl["name"]] = entry
            if real:
                entry["memory"] = self.real_memory(wl, confs)
        self.data["overhead"] = res

    def real_memory(self, wl, confs):
        """Profiler memory on an unmodified program: mprof's stats at exit via the statdump
        preload, and peak RSS against plain mimalloc and against the program doing nothing."""
        mi = next(c for c in confs if c["name"] == "mimalloc")
        mp = next(c for c in confs if c["name"] == "mprof-512k")
        _, rss_empty, _, _ = self.run_rss(wl["empty"], mi, extra_env=wl.get("env"))
        statfile = os.path.join(self.tmp, "statdump.txt")
        if os.path.exists(statfile):
            os.unlink(statfile)
        env = dict(wl.get("env", {}))
        env["BENCH_STATDUMP"] = statfile
        conf = dict(mp, env=dict(mp["env"], LD_PRELOAD=mp["env"]["LD_PRELOAD"] + ":" +
                                 self.bin("libbench_statdump.so")))
        self.run_rss(wl["cmd"], conf, stdin=wl.get("stdin"), extra_env=env)
        rows = parse_results(open(statfile).read()) if os.path.exists(statfile) else []
        rows = [r for r in rows if r.get("kind") == "statdump"]
        stat = max(rows, key=lambda r: r.get("metadata_bytes", -1)) if rows else {}
        return dict(rss_empty_kib=rss_empty, stats=stat)

    # -- 2. callgrind: instructions per unsampled malloc/free pair ---------------------------------
    def bench_callgrind(self):
        if not self.p["cg_ops"]:
            return
        if not shutil.which("valgrind"):
            self.problem("valgrind not installed: instruction counts skipped")
            return
        L = self.libs
        mp = self.libmprof
        n1, n2 = self.p["cg_ops"]
        # (name, label, env, baseline, also compared with Debian's build)
        confs = [("mimalloc", "mimalloc (same source, no profiler)", {"LD_PRELOAD": L["mimalloc"]}, None)]
        if L["mimalloc_debian"]:
            confs.append(("mimalloc-debian", "mimalloc (Debian build)",
                          {"LD_PRELOAD": L["mimalloc_debian"]}, "mimalloc"))
        confs += [("mprof-lg40", "mprof lg_prof_sample:40", {"LD_PRELOAD": mp, "MPROF_CONF": "lg_prof_sample:40"}, "mimalloc"),
                  ("mprof-inactive", "mprof prof_active:false", {"LD_PRELOAD": mp, "MPROF_CONF": "prof_active:false"}, "mimalloc"),
                  ("mprof-512k", "mprof 512 KiB (samples included)", {"LD_PRELOAD": mp, "MPROF_CONF": ""}, "mimalloc"),
                  ("mprof-off", "mprof prof:false", {"LD_PRELOAD": mp, "MPROF_CONF": "prof:false"}, "mimalloc")]
        if L["jemalloc"]:
            je = L["jemalloc"]
            confs += [("jemalloc", "jemalloc", {"LD_PRELOAD": je}, None),
                      ("jemalloc-lg40", "jemalloc prof:true,lg_prof_sample:40",
                       {"LD_PRELOAD": je, "MALLOC_CONF": "prof:true,lg_prof_sample:40"}, "jemalloc"),
                      ("jemalloc-inactive", "jemalloc prof:true,prof_active:false",
                       {"LD_PRELOAD": je, "MALLOC_CONF": "prof:true,prof_active:false"}, "jemalloc")]
        if L["tcmalloc"]:
            tc = L["tcmalloc"]
            confs += [("tcmalloc", "tcmalloc", {"LD_PRELOAD": tc}, None),
                      ("tcmalloc-2^40", "tcmalloc sampler 2^40",
                       {"LD_PRELOAD": tc, "TCMALLOC_SAMPLE_PARAMETER": str(1 << 40)}, "tcmalloc")]
        # Per-instruction counts (both sizes, so that per-function figures are per pair too).
        detailed = ("mimalloc", "mimalloc-debian", "mprof-lg40")
        log("bench: callgrind %d configs x 2 sizes" % len(confs))
        ir, counts = {}, {}
        for name, label, env, base in confs:
            ir[name] = {}
            for n in (n1, n2):
                out = os.path.join(self.tmp, "callgrind.%s.%d" % (name, n))
                cmd = ["valgrind", "--tool=callgrind", "--toggle-collect=bench_loop",
                       "--callgrind-out-file=" + out]
                if name in detailed:
                    cmd += ["--dump-instr=yes", "--dump-line=no", "--compress-strings=no",
                            "--compress-pos=no"]
                cmd += [self.bin("bench_alloc"), "--workload", "small", "--ops", str(n)]
                _, _, err = self.run(cmd, dict(name=name, env=env))
                m = re.search(r"Collected\s*:\s*(\d+)", err)
                if not m:
                    raise RuntimeError("no callgrind total for " + name)
                ir[name][n] = int(m.group(1))
                if name in detailed:
                    counts.setdefault(name, {})[n] = self.cg_counts(out)
        per_pair = {name: (ir[name][n2] - ir[name][n1]) / (n2 - n1) for name in ir}
        rows = []
        for name, label, env, base in confs:
            row = dict(name=name, label=label, base=base, ir_per_pair=per_pair[name])
            if base:
                row["extra_per_pair"] = per_pair[name] - per_pair[base]
            if name.startswith("mprof") and "mimalloc-debian" in per_pair:
                row["extra_vs_debian"] = per_pair[name] - per_pair["mimalloc-debian"]
            rows.append(row)
        libs = {"mimalloc": L["mimalloc"], "mimalloc-debian": L["mimalloc_debian"], "mprof-lg40": mp}
        functions, annotate = {}, {}
        for name, c in counts.items():
            lib = os.path.basename(os.path.realpath(libs[name]))
            # Self instructions per pair: the difference of the two sizes, like the totals.
            fn = {}
            for n, sign in ((n2, 1), (n1, -1)):
                for (ob, f), byaddr in c[n].items():
                    if ob and os.path.basename(os.path.realpath(ob)) == lib:
                        k = fn.setdefault(f, {})
                        for addr, x in byaddr.items():
                            k[addr] = k.get(addr, 0) + sign * x
            functions[name] = [dict(object=lib, function=f, per_op=sum(v.values()) / (n2 - n1))
                               for f, v in sorted(fn.items(), key=lambda kv: -sum(kv[1].values()))]
            annotate[name] = self.annotate(libs[name], fn, n2 - n1)
        self.data["callgrind"] = dict(ops=[n1, n2], rows=rows, raw=ir, annotate=annotate,
                                      functions=functions)

    @staticmethod
    def cg_counts(path):
        """Self Ir by (object, function) and instruction address, from a callgrind file written
        with --dump-instr=yes --dump-line=no --compress-strings=no --compress-pos=no."""
        counts = {}
        ob = fn = None
        skip = False
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if line.startswith("ob="):
                    ob = line[3:]
                elif line.startswith("fn="):
                    fn = line[3:]
                elif line.startswith("calls="):
                    skip = True  # the next cost line is the call's inclusive cost
                elif line.startswith("0x"):
                    if skip:
                        skip = False
                        continue
                    addr, cnt = line.split()[:2]
                    c = counts.setdefault((ob, fn), {})
                    c[int(addr, 16)] = c.get(int(addr, 16), 0) + int(cnt)
        return counts

    @staticmethod
    def annotate(lib, fn_counts, pairs):
        """malloc and free of a library, objdump's disassembly (from the exported symbol's
        address, for its size, so that aliases and stripped libraries work) with the execution
        count per malloc/free pair of every instruction."""
        out = {}
        lib = os.path.realpath(lib)
        if not shutil.which("objdump") or not shutil.which("nm"):
            return out
        syms = {}
        for line in subprocess.run(["nm", "-D", "-S", "--defined-only", lib], capture_output=True,
                                   text=True).stdout.splitlines():
            f = line.split()
            if len(f) == 4:
                syms[f[3].split("@")[0]] = (int(f[0], 16), int(f[1], 16))
        byaddr = {}
        for c in fn_counts.values():
            for a, x in c.items():
                byaddr[a] = byaddr.get(a, 0) + x
        for fn in ("malloc", "free"):
            if fn not in syms:
                continue
            start, size = syms[fn]
            dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "--start-address=%#x" % start,
                                  "--stop-address=%#x" % (start + size), lib],
                                 capture_output=True, text=True).stdout
            lines = []
            for line in dis.splitlines():
                m = re.match(r"\s+([0-9a-f]+):\s+(.*)$", line)
                if not m:
                    continue
                addr = int(m.group(1), 16)
                lines.append(dict(addr=addr, per_call=byaddr.get(addr, 0) / pairs,
                                  insn=re.sub(r"\s+", " ", m.group(2))))
            out[fn] = lines
        return out

    # -- 3. cost of one sample by stack depth ---------------------------------------------------------
    def bench_sample_cost(self):
        mp = self.libmprof
        pairs = [("mprof", {"LD_PRELOAD": mp, "MPROF_CONF": "lg_prof_sample:0"},
                  {"LD_PRELOAD": mp, "MPROF_CONF": "prof_active:false"}, 1)]
        if self.mode != "smoke" and self.libs["jemalloc"]:
            je = self.libs["jemalloc"]
            pairs.append(("jemalloc", {"LD_PRELOAD": je, "MALLOC_CONF": "prof:true,lg_prof_sample:0"},
                          {"LD_PRELOAD": je, "MALLOC_CONF": "prof:true,prof_active:false"}, 10))
        res = {}
        log("bench: sample cost at depths %s, %d rounds" % (list(self.p["depths"]), self.p["cost_rounds"]))
        for prof, on, off, slower in pairs:
            ops = max(1000, self.p["cost_ops"] // slower)  # a jemalloc sample costs ~10x more
            res[prof] = {}
            for d in self.p["depths"]:
                cmd = [self.bin("bench_alloc"), "--workload", "small", "--threads", "1", "--frames",
                       str(d), "--ops", str(ops)]
                costs, cpu_costs, samples, frames = [], [], [], None
                for r in range(self.p["cost_rounds"]):
                    order = [("on", on), ("off", off)] if r % 2 == 0 else [("off", off), ("on", on)]
                    t = {}
                    for which, env in order:
                        _, out, _ = self.run(cmd, dict(name=prof + "-" + which, env=env))
                        row = parse_results(out)[0]
                        t[which] = row["seconds"]
                        t["cpu_" + which] = row["cpu_seconds"]
                        frames = row["frames"]
                        if which == "on":
                            samples.append(row.get("samples", -1))
                    costs.append((t["on"] - t["off"]) * 1e9 / ops)
                    cpu_costs.append((t["cpu_on"] - t["cpu_off"]) * 1e9 / ops)
                res[prof][str(d)] = dict(summary(costs), all=costs, frames=frames, samples=samples,
                                         ops=ops, cpu=summary(cpu_costs))
        self.data["sample_cost"] = res

    # -- 3b. one sample at depth 8, on one thread and on two threads at once --------------------------
    def bench_sample_threads(self):
        """st-small and mt-small at depth 8, lg_prof_sample:0 against prof_active:false: what one
        sample costs when one thread samples and when two sample at once (a process-wide lock on
        the sampled path would make the second dearer)."""
        mp = self.libmprof
        on = {"LD_PRELOAD": mp, "MPROF_CONF": "lg_prof_sample:0"}
        off = {"LD_PRELOAD": mp, "MPROF_CONF": "prof_active:false"}
        ops = self.p["thread_ops"]
        rounds = max(1, self.p["cost_rounds"])
        log("bench: sample cost at depth 8 on 1 and 2 threads, %d rounds" % rounds)
        res = {}
        for threads in (1, 2):
            cmd = [self.bin("bench_alloc"), "--workload", "small", "--threads", str(threads),
                   "--frames", "8", "--ops", str(ops)]
            wall, cpu, samples = [], [], []
            for r in range(rounds):
                t = {}
                order = [("on", on), ("off", off)] if r % 2 == 0 else [("off", off), ("on", on)]
                for which, env in order:
                    _, out, _ = self.run(cmd, dict(name="mprof-" + which, env=env))
                    row = parse_results(out)[0]
                    t[which], t["cpu_" + which] = row["seconds"], row["cpu_seconds"]
                    if which == "on":
                        samples.append(row.get("samples", -1))
                # Each thread does `ops` pairs, the threads side by side: wall per pair of one
                # thread, CPU per pair of all of them.
                wall.append((t["on"] - t["off"]) * 1e9 / ops)
                cpu.append((t["cpu_on"] - t["cpu_off"]) * 1e9 / (ops * threads))
            res[str(threads)] = dict(summary(wall), all=wall, cpu=dict(summary(cpu), all=cpu),
                                     ops=ops, threads=threads, samples=samples)
        self.data["sample_threads"] = res

    # -- 3c. thread churn: 400 short-lived allocating threads -----------------------------------------
    def bench_threads(self):
        """bench_threads (400 threads, 4 at a time, 1 MiB allocated each) under plain mimalloc and
        mprof (prof:false, default rate, prof_active:false), and jemalloc with and without its
        profiler, interleaved in rounds; ratios to the allocator's own baseline of the same round.
        Then the first two mallocs of each thread with every allocation sampled: what a thread's
        first sample costs beyond a later one."""
        L = self.libs
        mp = self.libmprof
        confs = []
        if L["mimalloc"]:
            confs.append(dict(name="mimalloc", group="mimalloc", base=True, env={"LD_PRELOAD": L["mimalloc"]}))
        confs += [dict(name="mprof-off", group="mimalloc", base=False,
                       env={"LD_PRELOAD": mp, "MPROF_CONF": "prof:false"}),
                  dict(name="mprof-512k", group="mimalloc", base=False, env={"LD_PRELOAD": mp, "MPROF_CONF": ""}),
                  dict(name="mprof-inactive", group="mimalloc", base=False,
                       env={"LD_PRELOAD": mp, "MPROF_CONF": "prof_active:false"})]
        if self.mode != "smoke" and L["jemalloc"]:
            confs += [dict(name="jemalloc", group="jemalloc", base=True, env={"LD_PRELOAD": L["jemalloc"]}),
                      dict(name="jemalloc-512k", group="jemalloc", base=False,
                           env={"LD_PRELOAD": L["jemalloc"], "MALLOC_CONF": "prof:true,lg_prof_sample:19"})]
        n = self.p["threads"]
        cmd = [self.bin("bench_threads"), "--threads", str(n), "--batch", "4", "--bytes", str(1 << 20)]
        rounds = self.p["thread_rounds"]
        log("bench: thread churn, %d threads, %d configs x %d rounds" % (n, len(confs), rounds))
        runs = {c["name"]: [] for c in confs}
        for r in range(rounds + (1 if self.p["warmup"] else 0)):
            k = r % len(confs)
            order = confs[k:] + confs[:k]
            for c in (order[::-1] if r % 2 else order):
                _, out, _ = self.run(cmd, c)
                if self.p["warmup"] and r == 0:
                    continue
                row = parse_results(out)[0]
                runs[c["name"]].append(dict(seconds=row["seconds"], cpu_seconds=row["cpu_seconds"],
                                            samples=row.get("samples", -1)))
        res = dict(cmd=cmd, threads=n, runs=runs, ratios={}, cpu_ratios={}, time={})
        for c in confs:
            res["time"][c["name"]] = summary([x["seconds"] for x in runs[c["name"]]])
            base = next((b for b in confs if b["group"] == c["group"] and b["base"]), None)
            if base is None or c["base"]:
                continue
            w = [a["seconds"] / b["seconds"] for a, b in zip(runs[c["name"]], runs[base["name"]])]
            u = [a["cpu_seconds"] / b["cpu_seconds"] for a, b in zip(runs[c["name"]], runs[base["name"]])]
            res["ratios"][c["name"]] = dict(summary(w), base=base["name"], all=w)
            res["cpu_ratios"][c["name"]] = dict(summary(u), base=base["name"], all=u)
        # The first sample of a thread against its second, every allocation sampled.
        first = {}
        fcmd = [self.bin("bench_threads"), "--threads", str(n), "--batch", "1", "--bytes", "0"]
        fconfs = [("mprof", {"LD_PRELOAD": mp, "MPROF_CONF": "lg_prof_sample:0"})]
        if L["mimalloc"]:
            fconfs.append(("mimalloc", {"LD_PRELOAD": L["mimalloc"]}))
        if self.mode != "smoke" and L["jemalloc"]:
            fconfs.append(("jemalloc", {"LD_PRELOAD": L["jemalloc"],
                                        "MALLOC_CONF": "prof:true,lg_prof_sample:0"}))
        for name, env in fconfs:
            f, sec = [], []
            for r in range(max(1, rounds // 3)):
                _, out, _ = self.run(fcmd, dict(name=name, env=env))
                row = parse_results(out)[0]
                f.append(row["first_malloc_ns"])
                sec.append(row["second_malloc_ns"])
            first[name] = dict(first=summary(f), second=summary(sec),
                               extra=summary([a - b for a, b in zip(f, sec)]))
        res["first_sample"] = first
        self.data["threads"] = res

    def profile_sample_path(self):
        """Where the time of a sample goes: perf (cpu-clock, works without hardware counters)
        on the lg_prof_sample:0 loop at depth 32, flat by object and by symbol."""
        if self.mode == "smoke" or not shutil.which("perf"):
            return
        data = os.path.join(self.tmp, "perf.data")
        cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000", "-o", data,
               self.bin("bench_alloc"), "--workload", "small", "--frames", "32", "--ops",
               str(self.p["cost_ops"] * 2)]
        try:
            self.run(cmd, dict(name="perf", env={"LD_PRELOAD": self.libmprof,
                                                 "MPROF_CONF": "lg_prof_sample:0"}))
        except RuntimeError as e:
            self.problem("perf record failed, no profile of the sample path: %s" % str(e)[:200])
            return
        out = {}
        for key, sort in (("by_object", "dso"), ("by_symbol", "dso,sym")):
            r = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", sort,
                                "--stdio", "-g", "none", "--percent-limit", "1"],
                               capture_output=True, text=True, cwd=self.tmp)
            rows = []
            for line in r.stdout.splitlines():
                m = re.match(r"\s*([\d.]+)%\s+(\S+)(?:\s+\[.\]\s+(.*?))?\s*$", line)
                if m:
                    rows.append(dict(pct=float(m.group(1)), object=m.group(2), symbol=(m.group(3) or "").strip()))
            out[key] = rows
        self.data["sample_profile"] = out

    def tcmalloc_check(self):
        """Which gperftools library samples: each with TCMALLOC_SAMPLE_PARAMETER=4096 (about every
        other allocation of this loop sampled) against itself without it."""
        libs = [(n, self.libs[n]) for n in ("tcmalloc", "tcmalloc_minimal") if self.libs[n]]
        if self.mode == "smoke" or not libs:
            return
        cmd = [self.bin("bench_alloc"), "--workload", "small", "--ops", "50000"]
        res = {}
        for name, lib in libs:
            ratios = []
            for r in range(3):
                t = {}
                for which, env in (("off", {"LD_PRELOAD": lib}),
                                   ("on", {"LD_PRELOAD": lib, "TCMALLOC_SAMPLE_PARAMETER": "4096"})):
                    _, out, _ = self.run(cmd, dict(name=name, env=env))
                    t[which] = parse_results(out)[0]["seconds"]
                ratios.append(t["on"] / t["off"])
            nm = subprocess.run(["nm", "-D", lib], capture_output=True, text=True).stdout
            res[name] = dict(ratio=statistics.median(ratios), lib=lib,
                             has_GetStackTrace="GetStackTrace" in nm)
        self.data["tcmalloc_check"] = res

    # -- 4. scale: 100 000 stacks ---------------------------------------------------------------------
    def bench_scale(self):
        mp = self.libmprof
        runs = [("mprof", {"LD_PRELOAD": mp, "MPROF_CONF": "lg_prof_sample:0"})]
        if self.mode != "smoke" and self.libs["jemalloc"]:
            runs.append(("jemalloc", {"LD_PRELOAD": self.libs["jemalloc"], "MALLOC_CONF":
                                      "prof:true,prof_accum:true,lg_prof_sample:0,prof_prefix:" +
                                      os.path.join(self.tmp, "jeprof")}))
        res = {}
        for name, env in runs:
            log("bench: scale %s, %d stacks" % (name, self.p["stacks"]))
            _, out, _ = self.run([self.bin("bench_stacks"), "--out", self.tmp, "--stacks",
                                  str(self.p["stacks"]), "--dumps", str(self.p["dumps"])],
                                 dict(name=name, env=env), timeout=900)
            rows = parse_results(out)
            res[name] = dict(stages=[r for r in rows if r.get("kind") == "stage"],
                             per_bucket=next((r for r in rows if r.get("kind") == "per_bucket"), {}),
                             blocks=next((r for r in rows if r.get("kind") == "blocks"), {}),
                             latency={r["phase"]: r for r in rows if r.get("kind") == "latency"},
                             window=next((r for r in rows if r.get("kind") == "latency_window"), {}))
        self.data["scale"] = res

    # -- checks ---------------------------------------------------------------------------------------
    def check(self):
        """Structural checks only (never a time): every part produced parseable numbers, and
        mprof recorded about as many samples as its rate predicts."""
        errs = []
        ran = self.args.only.split(",") if self.args.only else list(self.SECTIONS)
        ov = self.data.get("overhead", {})
        if not ov and "overhead" in ran:
            errs.append("no overhead results")
        for wl, e in ov.items():
            for name, r in e["ratios"].items():
                if r is None or not all(math.isfinite(x) and x > 0 for x in r["all"]):
                    errs.append("bad ratio %s/%s" % (wl, name))
            for name, ss in e.get("samples", {}).items():
                for got, want in ss:
                    if want is not None and want >= 50 and got >= 0 and got < 0.5 * want:
                        msg = ("sampling check: %s under %s recorded %d samples where about %.0f "
                               "were expected" % (wl, name, got, want))
                        if msg not in self.data["problems"]:
                            self.problem(msg)
        for prof, byd in self.data.get("sample_cost", {}).items():
            for d, r in byd.items():
                if not math.isfinite(r["median"]):
                    errs.append("bad sample cost %s depth %s" % (prof, d))
                if prof == "mprof" and any(0 <= s < 0.9 * r["ops"] for s in r["samples"]):
                    self.problem("sampling check: at lg_prof_sample:0 mprof recorded %s samples "
                                 "for %d allocations (depth %s): the sample-cost numbers do not "
                                 "measure sampling" % (r["samples"], r["ops"], d))
        sc = self.data.get("scale", {}).get("mprof")
        if "scale" in ran and (not sc or not sc["stages"] or "dump" not in sc["latency"]):
            errs.append("no scale results")
        th = self.data.get("threads")
        if "threads" in ran:
            if not th or not th["ratios"].get("mprof-512k"):
                errs.append("no thread-churn results")
            elif not all(math.isfinite(x) and x > 0 for r in th["ratios"].values() for x in r["all"]):
                errs.append("bad thread-churn ratio")
        st = self.data.get("sample_threads")
        if "sample-threads" in ran and (not st or not all(math.isfinite(v["median"]) for v in st.values())):
            errs.append("no sample cost on 1 and 2 threads")
        return errs

    SECTIONS = ("overhead", "sample-cost", "sample-threads", "threads", "profile", "tcmalloc",
                "scale", "callgrind")

    def run_all(self):
        t0 = time.time()
        steps = dict(zip(self.SECTIONS, (self.bench_overhead, self.bench_sample_cost,
                                         self.bench_sample_threads, self.bench_threads,
                                         self.profile_sample_path, self.tcmalloc_check,
                                         self.bench_scale, self.bench_callgrind)))
        only = self.args.only.split(",") if self.args.only else list(self.SECTIONS)
        for name in only:
            if name not in steps:
                sys.exit("bench: unknown section %r (sections: %s)" % (name, ", ".join(self.SECTIONS)))
        for name in self.SECTIONS:
            if name in only:
                steps[name]()
        self.data["seconds"] = time.time() - t0
        self.data["machine"] = machine_info(self.libs)
        self.data["tree"] = tree_info(self.build, bool(self.args.mprof_lib))
        return self.check()


def machine_info(libs):
    info = dict(nproc=os.cpu_count(), kernel=platform.release())
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pk = ["libmimalloc2.0", "libjemalloc2", "libgoogle-perftools4", "sqlite3", "python3", "valgrind",
          "libc6"]
    vers = {}
    for p in pk:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", p], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout:
            vers[p] = r.stdout
    info["packages"] = vers
    try:
        info["loadavg"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    return info


def git_tree():
    def git(*a):
        r = subprocess.run(["git", "-C", REPO] + list(a), capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""
    dirty = git("status", "--porcelain", "--", "plugin", "allocator-glue", "include", "CMakeLists.txt")
    return dict(commit=git("rev-parse", "--short", "HEAD"), dirty=bool(dirty))


def tree_info(build_dir, lib_overridden):
    """The source tree libmprof.so was built from: recorded by build(), else the current HEAD."""
    if lib_overridden:
        return dict(commit="(a library given with --mprof-lib)", dirty=False)
    try:
        with open(os.path.join(build_dir, TREE_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        t = git_tree()
        t["commit"] += " (HEAD now; build not made by run.py)"
        return t


TREE_FILE = "bench-built-from.json"


def build(build_dir):
    log("bench: building in %s" % build_dir)
    subprocess.run(["cmake", "-S", REPO, "-B", build_dir, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                    "-DMPROF_BUILD_BENCH=ON", "-DMPROF_BUILD_TESTS=OFF", "-DMPROF_WERROR=ON"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", build_dir, "-j", str(os.cpu_count() or 2)], check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(build_dir, TREE_FILE), "w") as f:
        json.dump(git_tree(), f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="mode", action="store_const", const="quick")
    g.add_argument("--smoke", dest="mode", action="store_const", const="smoke")
    ap.set_defaults(mode="full")
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build-bench"),
                    help="CMake build directory (default: build-bench/)")
    ap.add_argument("--no-build", action="store_true", help="use the build directory as it is")
    ap.add_argument("--results", default=os.path.join(BENCH_DIR, "results"),
                    help="where results go (default: bench/results/)")
    ap.add_argument("--mprof-lib", help="measure this libmprof.so instead of the built one")
    ap.add_argument("--only", help="run only these sections, comma-separated: " + ", ".join(Suite.SECTIONS) +
                    " (docs/BENCHMARKS.md is then not rewritten unless --docs yes)")
    ap.add_argument("--workloads", help="section overhead: only these workloads, comma-separated "
                    "(mt-small, st-small, large, realloc, deep-64, threads-64, sqlite3, python3, "
                    "python3-malloc; docs/BENCHMARKS.md is then not rewritten unless --docs yes)")
    ap.add_argument("--docs", choices=("auto", "yes", "no"), default="auto",
                    help="write docs/BENCHMARKS.md and docs/bench/*.png (auto: full mode only)")
    args = ap.parse_args()
    args.command_line = " ".join(["bench/run.sh"] + sys.argv[1:])
    # ctest runs the smoke mode on the build it belongs to: never rebuild that one.
    if not args.no_build and args.mode != "smoke":
        build(os.path.abspath(args.build_dir))
    for exe in ("bench_alloc", "bench_threads", "bench_stacks", "bench_exec", "libbench_statdump.so"):
        if not os.path.exists(os.path.join(args.build_dir, "bench", exe)):
            sys.exit("bench: %s not built in %s" % (exe, args.build_dir))
    suite = Suite(args)
    if not os.path.exists(suite.libmprof):
        sys.exit("bench: %s not found" % suite.libmprof)
    errs = suite.run_all()
    os.makedirs(suite.results, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(suite.results, "results-%s-%s.json" % (suite.mode, stamp))
    with open(path, "w") as f:
        json.dump(suite.data, f, indent=1)
    shutil.copyfile(path, os.path.join(suite.results, "latest-%s.json" % suite.mode))
    import report  # bench/report.py: tables, plots, docs
    write_docs = args.docs == "yes" or (args.docs == "auto" and suite.mode == "full" and not args.only
                                        and not args.workloads)
    report.write_all(suite.data, suite.results, REPO if write_docs else None)
    log("bench: results in %s (%.0f s)" % (path, suite.data["seconds"]))
    for p in suite.data["problems"]:
        log("bench: NOTE: " + p)
    if errs:
        for e in errs:
            log("bench: ERROR: " + e)
        sys.exit(1)


if __name__ == "__main__":
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree for report.py
    sys.path.insert(0, BENCH_DIR)
    main()
