#!/usr/bin/env bash
# Usage: hack/gobuild.sh NAME [go build flags] PACKAGE
#
# Runs `go build -v` and, instead of its list of packages, prints on stderr
# a line at most every PROGRESS_INTERVAL seconds (default 15) while the
# build goes on, and one at the end, so a cold build that takes minutes is
# never silent. Anything else go build prints (errors, downloads) passes
# through. The exit status is go build's.
set -uo pipefail
shopt -s lastpipe # the loop below runs in this shell, so n survives it

name=$1
shift
interval=${PROGRESS_INTERVAL:-15}
start=$SECONDS
last=$SECONDS
n=0

"${GO:-go}" build -v "$@" 2>&1 | while :; do
  if IFS= read -r -t "$interval" line; then
    # go build -v names each package it compiles, one import path a line.
    if [[ $line =~ ^[[:alnum:]._~/+-]+$ ]]; then
      n=$((n + 1))
    else
      printf '%s\n' "$line" >&2
    fi
  elif (($? <= 128)); then
    break # end of output; a status above 128 is the timeout
  fi
  if ((SECONDS - last >= interval)); then
    echo "    $name: still building, $n packages compiled so far ($((SECONDS - start)) s)" >&2
    last=$SECONDS
  fi
done
status=${PIPESTATUS[0]}
if ((status == 0)); then
  echo "    $name: built in $((SECONDS - start)) s ($n packages compiled)" >&2
else
  echo "    $name: go build failed (exit $status) after $((SECONDS - start)) s" >&2
fi
exit "$status"
