/* SPDX-License-Identifier: MIT */
/*
 * Statistics: bpfmem_nr_size_classes and bpfmem_cache_stats, exact on a
 * quiescent allocator, and their error answers.
 */
#include "helpers.h"

#include <errno.h>

static void test_nr_size_classes_by_allocator_kind(void **state)
{
	static struct bpf_mem_alloc any, fixed, pfixed, pany, zeroed;

	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&fixed, 100, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&pfixed, 100, true), 0);
	assert_int_equal(bpf_mem_alloc_percpu_init(&pany, NULL), 0);
	assert_int_equal(bpfmem_nr_size_classes(&any), 11);
	assert_int_equal(bpfmem_nr_size_classes(&fixed), 1);
	assert_int_equal(bpfmem_nr_size_classes(&pfixed), 1);
	assert_int_equal(bpfmem_nr_size_classes(&pany), 11);
	assert_int_equal(bpfmem_nr_size_classes(&zeroed), 0);
	assert_int_equal(bpfmem_nr_size_classes(NULL), -EINVAL);
	bpf_mem_alloc_destroy(&any);
	bpf_mem_alloc_destroy(&fixed);
	bpf_mem_alloc_destroy(&pfixed);
	bpf_mem_alloc_destroy(&pany);
	assert_int_equal(bpfmem_nr_size_classes(&any), 0);
	assert_int_equal(bpfmem_nr_size_classes(&fixed), 0);
}

/*
 * Right after init only the prefill exists: the initialising thread's CPU
 * (CPU 0) and the shared overflow CPU each got 4 small or 1 large object.
 */
static void test_stats_of_a_fresh_any_size_allocator_are_exact(void **state)
{
	static struct bpf_mem_alloc ma;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (int i = 0; i < NUM_CACHES; i++) {
		struct bpfmem_cache_stats st = t_stats(&ma, i);
		unsigned long prefill = bpf_mem_sizes[i] <= 256 ? 4 : 1;

		assert_int_equal(st.sz, sizeof(st));
		assert_int_equal(st.unit_size, bpf_mem_sizes[i]);
		assert_int_equal(st.cpus_used, 2);
		assert_int_equal(st.cached, 2 * prefill);
		assert_int_equal(st.backend_allocs, 2 * prefill);
		assert_int_equal(st.backend_frees, 0);
		assert_int_equal(st.refills, 2);
		assert_int_equal(st.trims, 0);
	}
	bpf_mem_alloc_destroy(&ma);
}

static void test_stats_of_fresh_fixed_and_percpu_allocators_are_exact(void **state)
{
	static struct bpf_mem_alloc fixed, big, pcpu;
	struct bpfmem_cache_stats st;

	assert_int_equal(bpf_mem_alloc_init(&fixed, 100, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&big, 5000, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&pcpu, 100, true), 0);
	st = t_stats(&fixed, 0);
	assert_int_equal(st.unit_size, 108);
	assert_int_equal(st.cpus_used, 2);
	assert_int_equal(st.cached, 8);
	assert_int_equal(st.backend_allocs, 8);
	assert_int_equal(st.refills, 2);
	st = t_stats(&big, 0);
	assert_int_equal(st.unit_size, 5008);
	assert_int_equal(st.cached, 2);
	assert_int_equal(st.backend_allocs, 2);
	st = t_stats(&pcpu, 0);
	assert_int_equal(st.unit_size, 100);
	assert_int_equal(st.low_watermark, 1);
	assert_int_equal(st.high_watermark, 3);
	assert_int_equal(st.batch, 1);
	assert_int_equal(st.cached, 2);
	assert_int_equal(st.backend_allocs, 2);
	bpf_mem_alloc_destroy(&fixed);
	bpf_mem_alloc_destroy(&big);
	bpf_mem_alloc_destroy(&pcpu);
}

/*
 * With nothing waiting for a grace period, every object the backend handed
 * out is either cached or in the caller's hands.
 */
static void test_stats_cached_plus_in_use_equals_backend_balance(void **state)
{
	static struct bpf_mem_alloc ma;
	void *p[10];

	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	for (int i = 0; i < 10; i++) {
		p[i] = bpf_mem_cache_alloc(&ma);
		assert_non_null(p[i]);
		irq_work_flush();
		struct bpfmem_cache_stats st = t_stats(&ma, 0);

		assert_int_equal(st.cached + (i + 1), st.backend_allocs - st.backend_frees);
	}
	for (int i = 0; i < 10; i++)
		bpf_mem_cache_free(&ma, p[i]);
	irq_work_flush();
	struct bpfmem_cache_stats st = t_stats(&ma, 0);

	assert_int_equal(st.cached, st.backend_allocs - st.backend_frees);
	bpf_mem_alloc_destroy(&ma);
}

static void test_stats_count_refills_and_trims(void **state)
{
	static struct bpf_mem_alloc ma;
	void *p[200];
	int n = 0;

	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	p[n++] = bpf_mem_cache_alloc(&ma);
	irq_work_flush();
	assert_int_equal(t_stats(&ma, 0).refills, 3);
	assert_int_equal(t_stats(&ma, 0).backend_allocs, 8 + 48);
	while (n < 150) {
		p[n] = bpf_mem_cache_alloc(&ma);
		assert_non_null(p[n++]);
		irq_work_flush();
	}
	assert_int_equal(t_stats(&ma, 0).trims, 0);
	while (n && t_stats(&ma, 0).trims == 0)
		bpf_mem_cache_free(&ma, p[--n]);
	assert_int_equal(t_stats(&ma, 0).trims, 1);
	bpfmem_rcu_barrier();
	/* the trim waits ready for reuse in the cache: cached, not freed */
	assert_int_equal(t_stats(&ma, 0).backend_frees, 0);
	while (n)
		bpf_mem_cache_free(&ma, p[--n]);
	bpf_mem_alloc_destroy(&ma);
}

static void test_stats_reject_bad_arguments(void **state)
{
	static struct bpf_mem_alloc any, fixed, zeroed;
	struct bpfmem_cache_stats st = { .sz = sizeof(st) }, orig;

	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&fixed, 100, false), 0);
	memset(&st, 0x5a, sizeof(st));
	st.sz = sizeof(st);
	orig = st;
	assert_int_equal(bpfmem_cache_stats(&any, -1, &st), -EINVAL);
	assert_int_equal(bpfmem_cache_stats(&any, 11, &st), -EINVAL);
	assert_int_equal(bpfmem_cache_stats(&fixed, 1, &st), -EINVAL);
	assert_int_equal(bpfmem_cache_stats(NULL, 0, &st), -EINVAL);
	assert_int_equal(bpfmem_cache_stats(&zeroed, 0, &st), -EINVAL);
	assert_memory_equal(&st, &orig, sizeof(st));
	assert_int_equal(bpfmem_cache_stats(&any, 0, NULL), -EINVAL);
	st.sz = 0;
	assert_int_equal(bpfmem_cache_stats(&any, 0, &st), -EINVAL);
	st.sz = offsetof(struct bpfmem_cache_stats, inline_refills) - 1;
	assert_int_equal(bpfmem_cache_stats(&any, 0, &st), -EINVAL);
	bpf_mem_alloc_destroy(&any);
	bpf_mem_alloc_destroy(&fixed);
	assert_int_equal(bpfmem_cache_stats(&any, 0, &st), -EINVAL);
}

static void test_stats_of_percpu_class_not_set_up_is_enoent(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpfmem_cache_stats st = { .sz = sizeof(st) };
	int idx64 = t_class_idx(64);

	assert_int_equal(bpf_mem_alloc_percpu_init(&ma, NULL), 0);
	for (int i = 0; i < NUM_CACHES; i++)
		assert_int_equal(bpfmem_cache_stats(&ma, i, &st), -ENOENT);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&ma, 64), 0);
	for (int i = 0; i < NUM_CACHES; i++) {
		st.sz = sizeof(st);
		assert_int_equal(bpfmem_cache_stats(&ma, i, &st), i == idx64 ? 0 : -ENOENT);
	}
	irq_work_flush();	/* the shared CPU's copy is prefilled by its refill */
	st = t_stats(&ma, idx64);
	assert_int_equal(st.unit_size, 64);
	assert_int_equal(st.cached, 2);
	bpf_mem_alloc_destroy(&ma);
}

/* libbpf style: a caller built against a newer, larger struct still works. */
static void test_stats_accept_a_larger_struct(void **state)
{
	static struct bpf_mem_alloc ma;
	struct {
		struct bpfmem_cache_stats st;
		unsigned long newer[4];
	} big = { .st.sz = sizeof(big) };

	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	assert_int_equal(bpfmem_cache_stats(&ma, 0, &big.st), 0);
	assert_int_equal(big.st.unit_size, 108);
	assert_int_equal(big.st.cached, 8);
	bpf_mem_alloc_destroy(&ma);
}

/* A caller built before inline_refills was added: its struct ends before
 * it, and nothing past its end is written. */
static void test_stats_fill_an_older_smaller_struct(void **state)
{
	static struct bpf_mem_alloc ma;
	size_t old_sz = offsetof(struct bpfmem_cache_stats, inline_refills);
	union {
		struct bpfmem_cache_stats st;
		unsigned char bytes[sizeof(struct bpfmem_cache_stats)];
	} u;

	memset(&u, 0x5a, sizeof(u));
	u.st.sz = old_sz;
	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	assert_int_equal(bpfmem_cache_stats(&ma, 0, &u.st), 0);
	assert_int_equal(u.st.sz, old_sz);
	assert_int_equal(u.st.unit_size, 108);
	assert_int_equal(u.st.cached, 8);
	for (size_t i = old_sz; i < sizeof(u); i++)
		assert_int_equal(u.bytes[i], 0x5a);
	bpf_mem_alloc_destroy(&ma);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nr_size_classes_by_allocator_kind),
		cmocka_unit_test(test_stats_of_a_fresh_any_size_allocator_are_exact),
		cmocka_unit_test(test_stats_of_fresh_fixed_and_percpu_allocators_are_exact),
		cmocka_unit_test(test_stats_cached_plus_in_use_equals_backend_balance),
		cmocka_unit_test(test_stats_count_refills_and_trims),
		cmocka_unit_test(test_stats_reject_bad_arguments),
		cmocka_unit_test(test_stats_of_percpu_class_not_set_up_is_enoent),
		cmocka_unit_test(test_stats_accept_a_larger_struct),
		cmocka_unit_test(test_stats_fill_an_older_smaller_struct),
	};

	return t_run(tests);
}
