#!/usr/bin/env bash
# Install the library into a scratch prefix, then build a consumer with find_package(mprof) and
# another with pkg-config, and run both.
set -euo pipefail
build=$1 consumer=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$consumer" -B "$work/cb" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/cb" >/dev/null
out=$("$work/cb/consumer")
echo "find_package consumer: $out"
[[ $out == "mprof "* ]]
libdir=$(dirname "$(find "$work/prefix" -name 'libmprof.so' | head -1)")
export PKG_CONFIG_PATH=$libdir/pkgconfig
cc -o "$work/pc" "$consumer/consumer.c" $(pkg-config --cflags --libs mprof)
out=$(LD_LIBRARY_PATH=$libdir "$work/pc")
echo "pkg-config consumer: $out"
[[ $out == "mprof "* ]]
echo "2 passed, 0 failed"
