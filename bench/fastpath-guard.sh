#!/bin/sh
# SPDX-License-Identifier: MIT
# Fast-path instruction budget: counts the instructions of N and 2N alloc+free
# pairs under callgrind (the difference cancels start-up and warm-up) and fails
# when instructions per pair exceed bench/fastpath-budget.txt.  No timing.
# With INLINE_DRIVER (the driver built with BPFMEM_INLINE), the inlined fast
# paths too: *_inl_pair lines, against the inlined limit.
# usage: fastpath-guard.sh DRIVER BUDGET_FILE [INLINE_DRIVER]
set -eu
driver=$1
budget_file=$2
inline_driver=${3:-}
N=${FASTPATH_N:-20000}

# A sanitizer runtime (linked dynamically by gcc, statically by clang) replaces
# the memory layout callgrind needs and adds its own instructions: nothing to
# measure.  Exit 77 is the test's SKIP_RETURN_CODE.
san=$({ nm -D "$driver"; ldd "$driver"; } 2>/dev/null |
	grep -oE '__(asan|tsan|ubsan|msan|hwasan)_[a-z_]+|lib(a|t|ub|m|hwa)san\.so[.0-9]*' | head -n 1 || true)
if [ -n "$san" ]; then
	echo "fastpath-guard: SKIPPED: $driver is instrumented ($san); the budget is for an" \
		"uninstrumented build"
	exit 77
fi
if ! command -v valgrind >/dev/null 2>&1; then
	echo "fastpath-guard: valgrind not installed (CI package valgrind)" >&2
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# count mode n: instructions collected inside run_pairs(); fails unless the run
# succeeded and callgrind collected a positive count (a driver without
# run_pairs, or one that never calls it, collects 0)
count() {
	if ! valgrind --tool=callgrind --toggle-collect=run_pairs \
		--callgrind-out-file="$tmp/cg.$1.$2" "$driver" "$1" "$2" >"$tmp/log" 2>&1; then
		cat "$tmp/log" >&2
		echo "fastpath-guard: the $1 run ($2 pairs) failed" >&2
		return 1
	fi
	n=$(awk '/^(summary|totals):/ { print $2; exit }' "$tmp/cg.$1.$2")
	case $n in
	'' | *[!0-9]* | 0)
		echo "fastpath-guard: callgrind collected nothing inside run_pairs for" \
			"the $1 run ($2 pairs): '$n'" >&2
		return 1 ;;
	esac
	echo "$n"
}

# per_pair mode: instructions per alloc+free, from N and 2N pairs (the
# difference cancels start-up and warm-up); 2N pairs must cost more than N
per_pair() {
	a=$(count "$1" "$N") || return 1
	b=$(count "$1" $((2 * N))) || return 1
	if [ "$b" -le "$a" ]; then
		echo "fastpath-guard: $1: $((2 * N)) pairs counted $b instructions, not more" \
			"than $N pairs ($a)" >&2
		return 1
	fi
	awk -v a="$a" -v b="$b" -v n="$N" 'BEGIN { printf "%.2f", (b - a) / n }'
}

status=0
# check DRIVER SUFFIX: the limit for reference, then every mode against its budget
check() {
	driver=$1
	ref=$(per_pair limit) || exit 1
	echo "fastpath-guard: limit$2 $ref instructions per alloc+free" \
		"(the reference: a thread-local free list, bench/limit.h)"
	for mode in cache any any-var; do
		key="${mode}$2_pair"
		budget=$(awk -v k="$key" '$1 == k { print $2 }' "$budget_file")
		if [ -z "$budget" ]; then
			echo "fastpath-guard: no $key line in $budget_file" >&2
			exit 1
		fi
		per=$(per_pair "$mode") || exit 1
		if awk -v p="$per" -v m="$budget" 'BEGIN { exit !(p <= m) }'; then
			echo "fastpath-guard: $key $per instructions per alloc+free (budget $budget): ok"
		else
			echo "fastpath-guard: $key $per instructions per alloc+free exceeds budget" \
				"$budget" >&2
			status=1
		fi
	done
}
check "$driver" ""
if [ -n "$inline_driver" ]; then
	check "$inline_driver" "_inl"
fi
exit $status
