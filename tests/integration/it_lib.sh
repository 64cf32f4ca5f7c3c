# Sourced by the integration scripts: `lib` and `prog` from the arguments, a scratch directory
# `work` removed on exit, and ok/bad/finish to count checks and print the closing line.
set -euo pipefail
lib=$1 prog=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0 checks=0
ok() { checks=$((checks + 1)); echo "ok   $1"; }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL $1"; }
finish() {
  echo "$((checks - fails)) passed, $fails failed"
  [ "$fails" -eq 0 ]
}
