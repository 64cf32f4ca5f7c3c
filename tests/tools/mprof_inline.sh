#!/usr/bin/env bash
# Names from debug information: a C++ program built -O2 -g (inline_leak.cc) leaks in leak_some,
# which the compiler inlines into main. `mprof top` must name leak_some at the line of its `new`
# (not main, not the standard library's allocator), and `mprof symbolize` must write a profile
# in which go tool pprof sees the same inline frames and lines without the binary.
# Usage: mprof_inline.sh MPROF INLINE_LEAK SOURCE
. "$(dirname "$0")/tools_lib.sh"
prog=$2 src=$3
command -v go >/dev/null || skip_or_fail "go (go tool pprof) not installed"
line=$(grep -n 'LEAK_LINE' "$src" | cut -d: -f1)
"$mprof" run -r 1 -q -o "$work/p" -- "$prog" 64 >/dev/null 2>"$work/run.err" ||
  bad "run: $(cat "$work/run.err")"
profile=$(ls "$work"/p.*.f.pb.gz 2>/dev/null | head -1)
[ -f "$profile" ] && ok "profile written" || { bad "no profile"; finish; }

"$mprof" top "$profile" --lines -n 3 >"$work/top.out"
first=$(sed -n 3p "$work/top.out")
case $first in
*"leak_some "*"inline_leak.cc:$line") ok "top site: leak_some inline_leak.cc:$line" ;;
*) bad "top site is not leak_some inline_leak.cc:$line: $(cat "$work/top.out")" ;;
esac

# --drop: leak_some declared a wrapper too, the site is the function it is inlined into.
"$mprof" top "$profile" --drop 'leak_s.*' -n 1 | sed -n 3p | grep -q ' main ' &&
  ok "--drop 'leak_s.*': the site is main" || bad "--drop: $("$mprof" top "$profile" --drop 'leak_s.*' -n 3)"
"$mprof" top "$profile" --drop '(' >/dev/null 2>"$work/drop.err" && bad "--drop '(' accepted" ||
  { grep -q 'not an extended regular expression' "$work/drop.err" && ok "--drop '(' refused with a reason" ||
    bad "--drop '(': $(cat "$work/drop.err")"; }

"$mprof" symbolize "$profile" "$work/s.pb.gz" && ok "symbolize wrote a profile" || bad "symbolize failed"
raw=$(go tool pprof -raw "$work/s.pb.gz" 2>/dev/null)
echo "$raw" | grep -q "leak_some .*inline_leak.cc:$line" &&
  ok "pprof -raw: a location has leak_some inline_leak.cc:$line" || bad "pprof -raw: no leak_some line: $raw"
echo "$raw" | sed -n '/^Mappings/,$p' | grep "$(basename "$prog")" | grep -q '\[FN\]\[FL\]\[LN\]\[IN\]' &&
  ok "pprof -raw: the program's mapping has functions, files, lines, inline frames" ||
  bad "pprof -raw: mapping flags: $(echo "$raw" | sed -n '/^Mappings/,$p')"
traces=$(go tool pprof -traces -sample_index=inuse_space "$work/s.pb.gz" 2>/dev/null)
echo "$traces" | grep -A1 'leak_some (inline)' | grep -q 'main' &&
  ok "pprof -traces: leak_some (inline) under main" || bad "pprof -traces: $traces"
# Without symbolize, pprof has only the names the library wrote: no file:line for the program.
go tool pprof -raw "$profile" 2>/dev/null | grep -q "inline_leak.cc:$line" &&
  bad "the unsymbolized profile already had lines (test proves nothing)" ||
  ok "the library's own profile has no lines (symbolize added them)"
# Numbers survive: the same bytes in use in both files.
t0=$(go tool pprof -top -unit=B -sample_index=inuse_space "$profile" 2>/dev/null | sed -n 's/.*of \([0-9]*\)B total.*/\1/p')
t1=$(go tool pprof -top -unit=B -sample_index=inuse_space "$work/s.pb.gz" 2>/dev/null | sed -n 's/.*of \([0-9]*\)B total.*/\1/p')
[ -n "$t0" ] && [ "$t0" = "$t1" ] && ok "inuse total unchanged ($t0 B)" || bad "inuse total $t0 vs $t1"

# Separate debug information: a stripped copy of the program with its debug file found through
# .gnu_debuglink (next to it), then only through a debuginfod client cache (by build id); a
# DEBUGINFOD_URLS pointing nowhere changes nothing (the network is not used).
command -v objcopy >/dev/null || skip_or_fail "objcopy (binutils) not installed"
mkdir -p "$work/dl" "$work/cache"
cp "$prog" "$work/dl/inl"
objcopy --only-keep-debug "$work/dl/inl" "$work/dl/inl.debug"
objcopy --strip-debug --strip-unneeded --add-gnu-debuglink="$work/dl/inl.debug" "$work/dl/inl"
"$mprof" run -r 1 -q -o "$work/s" -- "$work/dl/inl" 64 >/dev/null 2>&1
sp=$(ls "$work"/s.*.f.pb.gz | head -1)
check_site() { # LABEL: the top site of $sp is leak_some at its line
  local first
  first=$(DEBUGINFOD_URLS=http://127.0.0.1:9/ "$mprof" top "$sp" --lines -n 1 | sed -n 3p)
  case $first in
  *"leak_some "*"inline_leak.cc:$line") ok "$1: leak_some inline_leak.cc:$line" ;;
  *) bad "$1: top site: $first" ;;
  esac
}
check_site "stripped, debug file by .gnu_debuglink"
id=$(file -L "$work/dl/inl" | sed -n 's/.*BuildID\[sha1\]=\([0-9a-f]*\).*/\1/p')
[ -n "$id" ] || bad "no build id in the program"
mkdir -p "$work/cache/$id"
mv "$work/dl/inl.debug" "$work/cache/$id/debuginfo"
first=$("$mprof" top "$sp" --lines -n 1 | sed -n 3p)
case $first in *leak_some*) bad "without any debug file the site is still leak_some (test proves nothing)" ;;
*) ok "debug file gone: no inline names ($first)" ;; esac
DEBUGINFOD_CACHE_PATH=$work/cache check_site "stripped, debug file in a debuginfod cache"
finish
