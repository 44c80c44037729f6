#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# valgrind memcheck over a representative subset of the test binaries: any invalid access,
# uninitialised use or definite leak fails CI (--error-exitcode).  No suppressions are needed
# today; a suppression may only cover a known false positive in third-party code, with a
# comment saying why.
set -euo pipefail

cd "$(dirname "$0")/../.."
build=build-ci-valgrind
rm -rf "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBPFMEM_BUILD_BENCH=OFF \
	-DBPFMEM_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j2

# Left out, on purpose: test_signal and rel_stress_signal_storm (valgrind serialises threads
# and delivers signals only at its scheduling points, so a 10 kHz storm takes hours),
# rel_stress_thread_churn (10,000 threads: > 5 minutes), rel_stress_fork and test_fork (their
# children _exit with the objects of the parent's vanished threads, by design), and tests
# that re-exec /proc/self/exe (test_overflow_cpus: under valgrind that is valgrind's own tool).
subset=(
	tests/test_bad_input
	tests/test_cache
	tests/test_xthread
	tests/test_size_classes
	tests/test_free_rcu
	tests/test_destroy
	tests/test_objcg
	tests/test_percpu
	tests/test_rcu
	tests/test_irq_work
	tests/test_cpu
	tests/test_stats
	tests/test_warn
	tests/reliability/rel_test_fault_injection
	tests/reliability/rel_test_init_faults
	tests/reliability/rel_stress_allocator_churn
	tests/reliability/rel_stress_cross_thread
)

failed=()
for t in "${subset[@]}"; do
	echo "== valgrind $t"
	# --errors-for-leak-kinds=definite: the refill and liburcu threads are detached and
	# never joined, so their stacks are "possibly lost" at exit by design.
	# --child-silent-after-fork: rel_test_init_faults forks before it execs.
	# T_WATCHDOG_SECONDS: valgrind runs one thread at a time, 20-50x slower; the tests'
	# 60 s per-test watchdog is for native runs (test_xthread's free_rcu test needs 45-52 s
	# here on a quiet machine, more under load); `timeout 600` still bounds the binary.
	if ! T_WATCHDOG_SECONDS=300 BPFMEM_STRESS_SECONDS=5 timeout 600 valgrind -q --error-exitcode=1 \
		--leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
		--child-silent-after-fork=yes "$build/$t"; then
		failed+=("$t")
	fi
done
echo "== valgrind tests/reliability/rel_test_fuzz_corpus fuzz/corpus"
if ! timeout 600 valgrind -q --error-exitcode=1 --leak-check=full \
	--errors-for-leak-kinds=definite --show-leak-kinds=definite \
	"$build/tests/reliability/rel_test_fuzz_corpus" fuzz/corpus; then
	failed+=(rel_test_fuzz_corpus)
fi

if [ "${#failed[@]}" -ne 0 ]; then
	echo "valgrind: errors in: ${failed[*]}"
	exit 1
fi
echo "valgrind: $((${#subset[@]} + 1)) binaries clean"
