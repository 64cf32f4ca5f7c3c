#!/usr/bin/env bash
# Install the libraries into a scratch prefix, then build a consumer of one of them with
# find_package(mprof) and another with pkg-config, and run both.
# Usage: it_install.sh BUILD_DIR CONSUMER_DIR [TARGET LIBNAME]  (default mprof::mprof mprof)
set -euo pipefail
build=$1 consumer=$2 target=${3:-mprof::mprof} name=${4:-mprof}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$consumer" -B "$work/cb" -DCMAKE_PREFIX_PATH="$work/prefix" -DMPROF_TARGET="$target" >/dev/null
cmake --build "$work/cb" >/dev/null
out=$("$work/cb/consumer")
echo "find_package consumer ($target): $out"
[[ $out == "mprof "* ]]
libdir=$(dirname "$(find "$work/prefix" -name "lib$name.so" | head -1)")
export PKG_CONFIG_PATH=$libdir/pkgconfig
cc -o "$work/pc" "$consumer/consumer.c" $(pkg-config --cflags --libs "$name")
out2=$(LD_LIBRARY_PATH=$libdir "$work/pc")
echo "pkg-config consumer ($name): $out2"
[[ $out2 == "mprof "* ]]
[ "$out" = "$out2" ]
case $name in
mprof-jemalloc) [[ $out == *" on jemalloc 5.3.0"* ]] ;;
esac
echo "2 passed, 0 failed"
