#!/usr/bin/env bash
# The malloc family's results and errno as glibc sets them: it_errno_table prints one line per
# call (zero sizes, overflowing sizes and products, bad alignments); run under the library, every
# line must be the one glibc gives (the same program run with no preload), except where
# docs/OPTIONS.md documents a deliberate difference: aligned_alloc with an alignment that is not a
# power of two fails with EINVAL (C17, glibc 2.38 and later; older glibc treats it as memalign),
# and posix_memalign returns ENOMEM without setting errno (POSIX; glibc's sets it too).
# Arguments: LIB it_errno_table [PLAIN_ALLOCATOR...]: the plain allocators' differences from
# glibc are printed for comparison, not checked.
. "$(dirname "$0")/it_lib.sh"
shift 2

"$prog" >"$work/glibc"
LD_PRELOAD=$lib "$prog" >"$work/lib"
deliberate='^aligned_alloc\((0|3|24), '
while IFS= read -r want <&3 && IFS= read -r got <&4; do
  call=$(echo "${want:0:44}" | sed 's/ *$//')
  if [[ $want =~ $deliberate ]]; then
    want="$(printf '%-44s %s' "$call" 'NULL errno=EINVAL')"
  elif [[ $call == posix_memalign* ]]; then
    want=${want/ret=ENOMEM errno=ENOMEM/ret=ENOMEM errno=unchanged}
  fi
  [ "$got" = "$want" ] && ok "$got" || bad "$call: got '${got:45}', glibc: '${want:45}'"
done 3<"$work/glibc" 4<"$work/lib"
[ "$(wc -l <"$work/glibc")" = "$(wc -l <"$work/lib")" ] && ok "as many lines as glibc" ||
  bad "line counts differ"

for plain in "$@"; do
  [ -e "$plain" ] || continue
  echo "--- for comparison, $plain against glibc:"
  LD_PRELOAD=$plain "$prog" 2>&1 | diff "$work/glibc" - | grep '^>' || true
done
finish
