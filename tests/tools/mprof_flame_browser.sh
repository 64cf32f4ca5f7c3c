#!/usr/bin/env bash
# The flame graph in a real browser: headless Chromium opens the HTML from disk (no server, no
# network), and the rendered DOM holds the program's function names, hover titles with bytes and
# share, the search result and the zoom, with no script error in the console or on the page.
# Without chromium the test is skipped, or fails when CI=true.
# Usage: mprof_flame_browser.sh MPROF HELLO_HEAP
. "$(dirname "$0")/tools_lib.sh"
hello=$2
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || skip_or_fail "chromium not installed"

"$mprof" run -q -o "$work/hh" -- "$hello" >/dev/null
profile=$(ls "$work"/hh.*.f.pb.gz)
"$mprof" flame "$profile" -o "$work/inuse.html" && ok "flame --inuse written" || bad "flame failed"
"$mprof" flame "$profile" --alloc -o "$work/alloc.html" && ok "flame --alloc written" || bad "flame --alloc"
grep -Eq '(src|href)="?(https?:)?//' "$work/inuse.html" && bad "the page refers to the network" ||
  ok "the page loads nothing from the network"

render() { # render FILE.html[#fragment] OUT: the DOM after scripts ran; console in OUT.log
  timeout 120 "$browser" --headless=new --no-sandbox --disable-gpu --no-first-run \
    --user-data-dir="$work/profile" --window-size=1200,800 --enable-logging=stderr --v=0 \
    --virtual-time-budget=5000 --dump-dom "file://$1" >"$2" 2>"$2.log" || true
}
no_errors() { # no_errors OUT NAME
  if grep -Eiq 'CONSOLE.*(Uncaught|error)' "$1.log"; then
    bad "$2: script errors: $(grep -i console "$1.log" | head -3)"
  elif grep -q 'id="error">[^<]' "$1"; then
    bad "$2: the page shows an error: $(grep -o 'id="error">[^<]*' "$1")"
  else
    ok "$2: no script errors"
  fi
}
box() { grep -o "class=\"f[^\"]*\" title=\"$2 [^\"]*\"[^>]*>$2<" "$1" | head -1; }

render "$work/inuse.html" "$work/dom"
[ -s "$work/dom" ] && ok "chromium rendered the page" || bad "no DOM: $(tail -3 "$work/dom.log")"
no_errors "$work/dom" "in use"
for f in main make_cache leak_nodes; do
  [ -n "$(box "$work/dom" $f)" ] && ok "box for $f drawn" || bad "no box for $f"
done
[ -z "$(box "$work/dom" parse_lines)" ] && ok "parse_lines (nothing in use) not drawn" || bad "parse_lines drawn"
box "$work/dom" make_cache | grep -Eq 'title="make_cache — [0-9.]+ MiB \([0-9.]+%\)"' &&
  ok "hover title gives bytes and share: $(box "$work/dom" make_cache | grep -o 'title="[^"]*"')" ||
  bad "hover title: $(box "$work/dom" make_cache)"

grep -q '<details id="recon"><summary>reconciliation.*<pre>reconciliation (mimalloc' "$work/dom" &&
  grep -q 'committed (allocator, exact)' "$work/dom" && ok "the page carries the reconciliation block" ||
  bad "no reconciliation block on the page"

render "$work/inuse.html#search=leak_n" "$work/dom_search"
no_errors "$work/dom_search" "search"
box "$work/dom_search" leak_nodes | grep -q 'class="f m"' && ok "search highlights leak_nodes" ||
  bad "search: $(box "$work/dom_search" leak_nodes)"
box "$work/dom_search" make_cache | grep -q 'class="f m"' && bad "search highlights make_cache" ||
  ok "search leaves make_cache alone"
grep -Eq 'id="found">matched: [0-9.]+ MiB \([0-9.]+%\)' "$work/dom_search" && ok "search shows the matched total" ||
  bad "no matched total"

render "$work/inuse.html#zoom=make_cache" "$work/dom_zoom"
no_errors "$work/dom_zoom" "zoom"
wall=$(box "$work/dom_zoom" all | grep -o 'width: [0-9.]*px')
wmc=$(box "$work/dom_zoom" make_cache | grep -o 'width: [0-9.]*px')
[ -n "$wall" ] && [ "$wall" = "$wmc" ] && ok "zoomed: make_cache is as wide as the chart ($wmc)" ||
  bad "zoom: all '$wall' make_cache '$wmc'"
[ -z "$(box "$work/dom_zoom" leak_nodes)" ] && ok "zoomed: leak_nodes out of view" || bad "zoom shows leak_nodes"

render "$work/alloc.html" "$work/dom_alloc"
no_errors "$work/dom_alloc" "alloc"
[ -n "$(box "$work/dom_alloc" parse_lines)" ] && ok "alloc graph: parse_lines drawn" || bad "alloc: no parse_lines"

timeout 120 "$browser" --headless=new --no-sandbox --disable-gpu --no-first-run \
  --user-data-dir="$work/profile" --window-size=1000,420 --hide-scrollbars \
  --screenshot="$work/shot.png" "file://$work/inuse.html" >/dev/null 2>&1 || true
[ "$(head -c 4 "$work/shot.png" 2>/dev/null | od -An -c | tr -d ' ')" = '211PNG' ] &&
  ok "screenshot taken ($(stat -c %s "$work/shot.png") bytes)" || bad "no screenshot"
[ -n "${MPROF_SCREENSHOT:-}" ] && cp "$work/shot.png" "$MPROF_SCREENSHOT"
finish
