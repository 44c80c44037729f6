// SPDX-License-Identifier: MIT
/*
 * Backend fault injection through the slab seam (slab_fail_every) and the
 * accounting limit: allocation fails with NULL or -ENOMEM, nothing crashes
 * or leaks, and the allocator recovers once the faults stop.
 */
#include "rel_common.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#define MAX_LIVE	1024

struct live {
	void *p;
	size_t size;
	uint64_t serial;
};

static unsigned long rnd_state = 88172645463325252ull;

static unsigned long rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static long backend_delta_start;

static int setup(void **state)
{
	(void)state;
	rel_count_warnings();
	atomic_store(&rel_warnings, 0);
	backend_delta_start = rel_backend_outstanding();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	slab_fail_every(0);
	return 0;
}

static long faults_so_far(void)
{
	struct slab_stats st;

	slab_get_stats(&st);
	return st.failed;
}

static void test_init_returns_enomem_when_every_backend_alloc_fails(void **state)
{
	static struct bpf_mem_alloc ma;

	(void)state;
	slab_fail_every(1);
	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), -ENOMEM);
	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), -ENOMEM);
	assert_int_equal(bpf_mem_alloc_init(&ma, 64, true), -ENOMEM);
	assert_int_equal(bpf_mem_alloc_percpu_init(&ma, NULL), -ENOMEM);
	/* a failed init leaves nothing behind: allocation NULL, destroy no-op */
	assert_null(bpf_mem_alloc(&ma, 8));
	assert_null(bpf_mem_cache_alloc(&ma));
	bpf_mem_alloc_destroy(&ma);
	slab_fail_every(0);
	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(rel_backend_outstanding(), backend_delta_start);
	assert_int_equal(atomic_load(&rel_warnings), 0);
}

/*
 * One allocator of each kind used through a random op sequence while every
 * nth backend allocation fails; every object handed out keeps its stamp.
 */
static void churn_under_faults(unsigned long nth, unsigned long *ops, unsigned long *nulls)
{
	static struct live live[3][MAX_LIVE];
	static struct bpf_mem_alloc ma[3];
	int ret[3];
	uint64_t serial = 0;

	memset(live, 0, sizeof(live));
	/* init without faults: NULLs then come from working allocators whose
	 * backend fails, not from allocators that never came up (init
	 * failures have their own test above) */
	ret[0] = bpf_mem_alloc_init(&ma[0], 0, false);
	ret[1] = bpf_mem_alloc_init(&ma[1], 200, false);
	ret[2] = bpf_mem_alloc_init(&ma[2], 32, true);
	for (int k = 0; k < 3; k++)
		assert_int_equal(ret[k], 0);
	slab_fail_every(nth);

	for (int i = 0; i < 30000; i++) {
		int k = (int)(rnd() % 3);
		struct live *l = &live[k][rnd() % MAX_LIVE];
		unsigned long op = rnd() % 8;

		(*ops)++;
		if (l->p) {
			if (k != 2)
				assert_int_equal(rel_check(l->p, l->size, l->serial), 0);
			if (k == 0)
				op & 1 ? bpf_mem_free_rcu(&ma[0], l->p) : bpf_mem_free(&ma[0], l->p);
			else
				op & 1 ? bpf_mem_cache_free_rcu(&ma[k], l->p) : bpf_mem_cache_free(&ma[k], l->p);
			l->p = NULL;
			continue;
		}
		if (k == 0) {
			l->size = 1 + rnd() % (BPFMEM_ALLOC_SIZE_MAX - 8);
			l->p = bpf_mem_alloc(&ma[0], l->size);
		} else {
			l->size = k == 1 ? 200 : 0;
			l->p = bpf_mem_cache_alloc_flags(&ma[k], op & 1 ? BPFMEM_GFP_KERNEL : BPFMEM_GFP_NOWAIT);
		}
		if (!l->p) {
			(*nulls)++;
			continue;
		}
		assert_int_equal((uintptr_t)l->p % 8, 0);
		l->serial = ++serial;
		if (k == 2) {
			/* every per-CPU copy is writable */
			for (int cpu = 0; cpu < bpfmem_nr_cpus(); cpu += 7)
				memset(bpfmem_per_cpu_ptr(*(void **)l->p, cpu), 0xa5, 32);
		} else {
			rel_stamp(l->p, l->size, l->serial);
		}
	}
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < MAX_LIVE; i++)
			if (live[k][i].p) {
				if (k == 0)
					bpf_mem_free(&ma[0], live[k][i].p);
				else
					bpf_mem_cache_free(&ma[k], live[k][i].p);
			}
	for (int k = 0; k < 3; k++)
		bpf_mem_alloc_destroy(&ma[k]);
	slab_fail_every(0);
}

static void test_every_nth_backend_failure_gives_null_and_leaks_nothing(void **state)
{
	static const unsigned long nths[] = { 2, 3, 5, 17, 100 };
	unsigned long ops = 0, nulls = 0;
	long faults = faults_so_far();

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(nths); i++)
		churn_under_faults(nths[i], &ops, &nulls);
	faults = faults_so_far() - faults;
	rel_report("fault_every_nth", "injected=backend-fails-every-nth-alloc "
		   "cfg_fail_every=2,3,5,17,100 ops=%lu faults=%ld nulls=%lu", ops, faults, nulls);
	assert_true(faults > 0);
	assert_true(nulls > 0);
	/* the backend got back everything it gave, and no leak was reported */
	assert_int_equal(rel_backend_outstanding(), backend_delta_start);
	assert_int_equal(atomic_load(&rel_warnings), 0);
}

/* The refill work keeps failing while faults last; once they stop, one
 * flush of the refill work brings the cache back. */
static void test_allocator_recovers_when_backend_faults_stop(void **state)
{
	static void *held[4096];
	static struct bpf_mem_alloc ma;
	int n = 0, retries = 0, ops = 0;
	long faults = faults_so_far();

	(void)state;
	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	slab_fail_every(1);
	while (n < (int)ARRAY_SIZE(held) && (held[n] = bpf_mem_cache_alloc(&ma)))
		n++;
	ops += n + 1;
	assert_true(n < (int)ARRAY_SIZE(held));
	bpfmem_rcu_barrier();	/* flushes the refill work: it fails too */
	assert_null(bpf_mem_cache_alloc(&ma));
	assert_null(bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL));

	slab_fail_every(0);
	for (int i = 0; i < 1000; i++) {
		void *p = bpf_mem_cache_alloc(&ma);

		if (!p) {
			bpfmem_rcu_barrier();
			retries++;
			p = bpf_mem_cache_alloc(&ma);
		}
		assert_non_null(p);
		rel_stamp(p, 100, (uint64_t)i);
		assert_int_equal(rel_check(p, 100, (uint64_t)i), 0);
		bpf_mem_cache_free(&ma, p);
		ops += 2;
		/* keep draining so that refills are needed again and again */
		if (n < (int)ARRAY_SIZE(held)) {
			ops++;
			if ((held[n] = bpf_mem_cache_alloc(&ma)))
				n++;
		}
	}
	rel_report("fault_recovery", "injected=every-backend-alloc-fails-then-none "
		   "ops=%d faults=%ld flush_retries=%d", ops, faults_so_far() - faults, retries);
	while (n > 0)
		bpf_mem_cache_free(&ma, held[--n]);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(rel_backend_outstanding(), backend_delta_start);
	assert_int_equal(atomic_load(&rel_warnings), 0);
}

/* An accounting limit is a fault too: NULL beyond it, back to 0 after. */
static void test_objcg_limit_fails_allocations_and_uncharges_everything(void **state)
{
	struct bpfmem_objcg *cg = bpfmem_objcg_create(64 * 1024);
	struct bpfmem_objcg *old;
	static void *held[4096];
	static struct bpf_mem_alloc ma;
	int n = 0, nulls = 0;

	(void)state;
	assert_non_null(cg);
	old = bpfmem_objcg_set_current(cg);
	assert_int_equal(bpf_mem_alloc_init(&ma, 1000, false), 0);
	bpfmem_objcg_set_current(old);
	for (int i = 0; i < (int)ARRAY_SIZE(held); i++) {
		void *p = bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL);

		if (!p) {
			nulls++;
			continue;
		}
		held[n++] = p;
		assert_true(bpfmem_objcg_usage(cg) <= 64 * 1024);
	}
	/* every object held is charged its 1008-byte unit */
	assert_true(n <= 64 * 1024 / 1008);
	assert_true(n > 0);
	assert_int_equal(n + nulls, (int)ARRAY_SIZE(held));
	rel_report("fault_objcg_limit", "injected=accounting-group-limit cfg_limit_bytes=%d "
		   "ops=%d nulls=%d", 64 * 1024, n + nulls, nulls);
	while (n > 0)
		bpf_mem_cache_free(&ma, held[--n]);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(bpfmem_objcg_usage(cg), 0);
	bpfmem_objcg_put(cg);
	assert_int_equal(atomic_load(&rel_warnings), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_init_returns_enomem_when_every_backend_alloc_fails,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_nth_backend_failure_gives_null_and_leaks_nothing,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_allocator_recovers_when_backend_faults_stop,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_objcg_limit_fails_allocations_and_uncharges_everything,
						setup, teardown),
	};

	/* a hang fails with a message instead of running into the ctest timeout */
	rel_watchdog(100, "test_fault_injection: still running after 100 s");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
