#!/bin/sh
# SPDX-License-Identifier: MIT
# Fast-path instruction budget: counts the instructions of N and 2N alloc+free
# pairs under callgrind (the difference cancels start-up and warm-up) and fails
# when instructions per pair exceed bench/fastpath-budget.txt.  No timing.
# usage: fastpath-guard.sh DRIVER BUDGET_FILE
set -eu
driver=$1
budget_file=$2
N=${FASTPATH_N:-20000}

if ! command -v valgrind >/dev/null 2>&1; then
	echo "fastpath-guard: valgrind not installed (CI package valgrind)" >&2
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

count() { # mode n -> instructions collected inside run_pairs()
	valgrind --tool=callgrind --toggle-collect=run_pairs \
		--callgrind-out-file="$tmp/cg.$1.$2" "$driver" "$1" "$2" >"$tmp/log" 2>&1 ||
		{ cat "$tmp/log" >&2; exit 1; }
	awk '/^(summary|totals):/ { print $2; exit }' "$tmp/cg.$1.$2"
}

status=0
per_pair() { # a b -> (b - a) / N
	awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN { printf "%.2f", (b - a) / n }'
}
ref=$(per_pair "$(count limit "$N")" "$(count limit $((2 * N)))")
echo "fastpath-guard: limit $ref instructions per alloc+free" \
	"(the reference: a thread-local free list, bench/limit.c)"
for mode in cache any; do
	a=$(count "$mode" "$N")
	b=$(count "$mode" $((2 * N)))
	budget=$(awk -v k="${mode}_pair" '$1 == k { print $2 }' "$budget_file")
	if [ -z "$budget" ]; then
		echo "fastpath-guard: no ${mode}_pair line in $budget_file" >&2
		exit 1
	fi
	per=$(per_pair "$a" "$b")
	if awk -v p="$per" -v m="$budget" 'BEGIN { exit !(p <= m) }'; then
		echo "fastpath-guard: ${mode}_pair $per instructions per alloc+free (budget $budget): ok"
	else
		echo "fastpath-guard: ${mode}_pair $per instructions per alloc+free exceeds budget $budget" >&2
		status=1
	fi
done
exit $status
