#!/usr/bin/env bash
# Installs the dependencies, builds libmprof.so and the mprof command, and profiles the bundled
# example with `mprof run`: its top allocation sites (in use and allocated), the reconciliation
# with the allocator's figures, the path of the profile; then draws the flame graph.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --minimal
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target mprof mprof_cli hello_heap >/dev/null
out=$(mktemp -d /tmp/mprof-demo.XXXXXX)
build/tools/mprof run -o "$out/hello" -- build/tests/integration/hello_heap
build/tools/mprof flame "$out"/hello.*.f.pb.gz -o "$out/flame.html"
echo
echo "flame graph: $out/flame.html (open it in a browser)"
