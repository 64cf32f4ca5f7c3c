#!/usr/bin/env bash
# Installs the dependencies, builds libmprof.so and profiles the bundled example: prints its top
# allocation sites (in use and allocated) and the path of the profile.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --minimal
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target mprof hello_heap >/dev/null
out=$(mktemp -d /tmp/mprof-demo.XXXXXX)
MPROF_CONF="prof_final:true,prof_prefix:$out/hello" LD_PRELOAD="$PWD/build/libmprof.so" \
  build/tests/integration/hello_heap
profile=$(ls "$out"/hello.*.f.pb.gz)
echo
echo "== in use at exit (go tool pprof -top -sample_index=inuse_space) =="
go tool pprof -top -sample_index=inuse_space "$profile" 2>/dev/null | sed -n '/flat%/,$p' | head -6
echo
echo "== allocated over the run (go tool pprof -top -sample_index=alloc_space) =="
go tool pprof -top -sample_index=alloc_space "$profile" 2>/dev/null | sed -n '/flat%/,$p' | head -6
echo
echo "profile: $profile"
