#!/usr/bin/env bash
# Runs the mprof benchmark suite: installs the Debian packages it needs (bench/install-deps.sh),
# builds libmprof.so and the bench programs with CMake, runs everything and writes
# bench/results/ and (full mode) docs/BENCHMARKS.md with docs/bench/*.png.
#
#   bench/run.sh            full run (about 15 minutes on 2 cores)
#   bench/run.sh --quick    smaller runs, fewer rounds (under a minute)
#   bench/run.sh --smoke    seconds; only what needs no extra packages (the ctest bench.smoke)
#   bench/run.sh --help     all options (bench/run.py)
#
# Set BENCH_NO_INSTALL=1 to skip the package step.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ "${BENCH_NO_INSTALL:-0}" != 1 ]]; then
  case " $* " in
    *" --smoke "*) "$here/install-deps.sh" --minimal ;;
    *" --help "* | *" -h "*) ;;
    *) "$here/install-deps.sh" ;;
  esac
fi
exec python3 "$here/run.py" "$@"
