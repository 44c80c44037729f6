/* SPDX-License-Identifier: MIT */
/*
 * Bad input (SPEC "Bad input"): every entry point answers NULL allocators,
 * uninitialised and destroyed ones, out-of-range sizes, wrong kinds,
 * unknown flags and out-of-range CPUs with a negative errno or NULL.  A
 * garbage allocator is undefined behaviour for the allocation and free
 * calls, as in the kernel (debug builds report it: debug_checks.c); the
 * process-context calls still reject it.
 */
#include "helpers.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

static const struct bpf_mem_alloc zero_ma;

/* Every allocation and free entry point against `bad`; `p` and `q` are live
 * objects of `good` (fixed-size and any-size) that must stay untouched. */
static void assert_rejected(struct bpf_mem_alloc *bad, struct bpf_mem_alloc *fixed,
			    struct bpf_mem_alloc *any)
{
	struct bpfmem_cache_stats st = { .sz = sizeof(st) };
	void *p = bpf_mem_cache_alloc(fixed), *q = bpf_mem_alloc(any, 40);

	assert_non_null(p);
	assert_non_null(q);
	assert_null(bpf_mem_alloc(bad, 8));
	assert_null(bpf_mem_cache_alloc(bad));
	assert_null(bpf_mem_cache_alloc_flags(bad, BPFMEM_GFP_NOWAIT));
	assert_null(bpf_mem_cache_alloc_flags(bad, BPFMEM_GFP_KERNEL));
	bpf_mem_free(bad, q);
	bpf_mem_free_rcu(bad, q);
	bpf_mem_cache_free(bad, p);
	bpf_mem_cache_free_rcu(bad, p);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(bad, 64), -EINVAL);
	assert_int_equal(bpfmem_cache_stats(bad, 0, &st), -EINVAL);
	/* none of the frees took the objects: they are not handed out again */
	irq_work_flush();
	void *p2 = bpf_mem_cache_alloc(fixed), *q2 = bpf_mem_alloc(any, 40);

	assert_ptr_not_equal(p2, p);
	assert_ptr_not_equal(q2, q);
	bpf_mem_cache_free(fixed, p2);
	bpf_mem_cache_free(fixed, p);
	bpf_mem_free(any, q2);
	bpf_mem_free(any, q);
}

static void test_null_allocator_is_rejected_by_every_entry_point(void **state)
{
	static struct bpf_mem_alloc fixed, any;

	assert_int_equal(bpf_mem_alloc_init(&fixed, 64, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(NULL, 0, false), -EINVAL);
	assert_int_equal(bpf_mem_alloc_init(NULL, 64, true), -EINVAL);
	assert_int_equal(bpf_mem_alloc_percpu_init(NULL, NULL), -EINVAL);
	assert_int_equal(bpfmem_nr_size_classes(NULL), -EINVAL);
	bpf_mem_alloc_destroy(NULL);
	assert_rejected(NULL, &fixed, &any);
	bpf_mem_alloc_destroy(&fixed);
	bpf_mem_alloc_destroy(&any);
}

static void test_zeroed_allocator_is_uninitialised_everywhere(void **state)
{
	static struct bpf_mem_alloc fixed, any, ma;

	assert_int_equal(bpf_mem_alloc_init(&fixed, 64, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	assert_int_equal(bpfmem_nr_size_classes(&ma), 0);
	assert_rejected(&ma, &fixed, &any);
	bpf_mem_alloc_destroy(&ma);
	assert_memory_equal(&ma, &zero_ma, sizeof(ma));
	bpf_mem_alloc_destroy(&fixed);
	bpf_mem_alloc_destroy(&any);
}

static void test_garbage_allocator_is_rejected_then_initialisable(void **state)
{
	static struct bpf_mem_alloc fixed, any, ma;
	struct bpfmem_cache_stats st = { .sz = sizeof(st) };

	assert_int_equal(bpf_mem_alloc_init(&fixed, 64, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	srand(1234);
	for (int round = 0; round < 64; round++) {
		unsigned char *b = (unsigned char *)&ma;

		for (size_t i = 0; i < sizeof(ma); i++)
			b[i] = round == 0 ? 0xa5 : (unsigned char)rand();
		assert_int_equal(bpfmem_nr_size_classes(&ma), 0);
		assert_int_equal(bpf_mem_alloc_percpu_unit_init(&ma, 64), -EINVAL);
		assert_int_equal(bpfmem_cache_stats(&ma, 0, &st), -EINVAL);
		bpf_mem_alloc_destroy(&ma);
		/* uninitialised memory is what init is normally given */
		assert_int_equal(bpf_mem_alloc_init(&ma, round % 2 ? 32 : 0, false), 0);
		bpf_mem_alloc_destroy(&ma);
	}
	bpf_mem_alloc_destroy(&fixed);
	bpf_mem_alloc_destroy(&any);
}

static void test_negative_size_to_init_is_einval(void **state)
{
	static struct bpf_mem_alloc ma;
	static const int sizes[] = { -1, -8, INT_MIN };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		assert_int_equal(bpf_mem_alloc_init(&ma, sizes[i], false), -EINVAL);
		assert_int_equal(bpf_mem_alloc_init(&ma, sizes[i], true), -EINVAL);
		assert_null(bpf_mem_cache_alloc(&ma));
		assert_null(bpf_mem_alloc(&ma, 8));
	}
}

static void test_percpu_size_zero_is_einval(void **state)
{
	static struct bpf_mem_alloc ma;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, true), -EINVAL);
	assert_null(bpf_mem_alloc(&ma, 8));
	assert_null(bpf_mem_cache_alloc(&ma));
}

static void test_percpu_size_above_4096_is_einval(void **state)
{
	static struct bpf_mem_alloc ma;

	assert_int_equal(bpf_mem_alloc_init(&ma, 4097, true), -EINVAL);
	assert_null(bpf_mem_cache_alloc(&ma));
	assert_int_equal(bpf_mem_alloc_init(&ma, 4096, true), 0);
	bpf_mem_alloc_destroy(&ma);
}

static void test_percpu_unit_init_rejects_bad_sizes_and_kinds(void **state)
{
	static struct bpf_mem_alloc pcpu, any, fixed;

	assert_int_equal(bpf_mem_alloc_percpu_init(&pcpu, NULL), 0);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&pcpu, 0), -EINVAL);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&pcpu, -1), -EINVAL);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&pcpu, INT_MIN), -EINVAL);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&pcpu, 4097), -EINVAL);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&pcpu, INT_MAX), -EINVAL);
	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&any, 64), -EINVAL);
	assert_int_equal(bpf_mem_alloc_init(&fixed, 64, true), 0);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&fixed, 64), -EINVAL);
	bpf_mem_alloc_destroy(&pcpu);
	bpf_mem_alloc_destroy(&any);
	bpf_mem_alloc_destroy(&fixed);
}

static void test_destroy_twice_is_a_noop_and_leaves_allocator_zeroed(void **state)
{
	static struct bpf_mem_alloc any, fixed, pcpu;

	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&fixed, 24, false), 0);
	assert_int_equal(bpf_mem_alloc_percpu_init(&pcpu, NULL), 0);
	bpf_mem_alloc_destroy(&any);
	bpf_mem_alloc_destroy(&fixed);
	bpf_mem_alloc_destroy(&pcpu);
	assert_memory_equal(&any, &zero_ma, sizeof(any));
	assert_memory_equal(&fixed, &zero_ma, sizeof(fixed));
	assert_memory_equal(&pcpu, &zero_ma, sizeof(pcpu));
	bpf_mem_alloc_destroy(&any);
	bpf_mem_alloc_destroy(&fixed);
	bpf_mem_alloc_destroy(&pcpu);
	assert_memory_equal(&any, &zero_ma, sizeof(any));
	assert_memory_equal(&fixed, &zero_ma, sizeof(fixed));
	assert_memory_equal(&pcpu, &zero_ma, sizeof(pcpu));
}

static void test_alloc_from_destroyed_allocator_returns_null(void **state)
{
	static struct bpf_mem_alloc any, fixed;

	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&fixed, 24, false), 0);
	bpf_mem_alloc_destroy(&any);
	bpf_mem_alloc_destroy(&fixed);
	assert_null(bpf_mem_alloc(&any, 8));
	assert_null(bpf_mem_cache_alloc(&fixed));
	assert_null(bpf_mem_cache_alloc_flags(&fixed, BPFMEM_GFP_KERNEL));
	assert_int_equal(bpfmem_nr_size_classes(&any), 0);
	/* and it can be initialised again */
	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	bpf_mem_alloc_destroy(&any);
}

static void test_init_twice_is_ebusy_and_keeps_the_first(void **state)
{
	static struct bpf_mem_alloc any, fixed;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&fixed, 24, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), -EBUSY);
	assert_int_equal(bpf_mem_alloc_init(&any, 24, false), -EBUSY);
	assert_int_equal(bpf_mem_alloc_init(&fixed, 0, false), -EBUSY);
	assert_int_equal(bpf_mem_alloc_init(&fixed, 8, true), -EBUSY);
	assert_int_equal(bpf_mem_alloc_percpu_init(&any, NULL), -EBUSY);
	assert_int_equal(bpf_mem_alloc_percpu_init(&fixed, NULL), -EBUSY);
	assert_int_equal(bpfmem_nr_size_classes(&any), NUM_CACHES);
	assert_int_equal(bpfmem_nr_size_classes(&fixed), 1);
	p = bpf_mem_alloc(&any, 100);
	assert_non_null(p);
	bpf_mem_free(&any, p);
	p = bpf_mem_cache_alloc(&fixed);
	assert_non_null(p);
	assert_int_equal(t_owner(p)->unit_size, 24 + T_HDR);
	bpf_mem_cache_free(&fixed, p);
	bpf_mem_alloc_destroy(&any);
	bpf_mem_alloc_destroy(&fixed);
}

static void test_cache_alloc_on_any_size_allocator_returns_null(void **state)
{
	static struct bpf_mem_alloc any;

	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	assert_null(bpf_mem_cache_alloc(&any));
	assert_null(bpf_mem_cache_alloc_flags(&any, BPFMEM_GFP_NOWAIT));
	assert_null(bpf_mem_cache_alloc_flags(&any, BPFMEM_GFP_KERNEL));
	bpf_mem_alloc_destroy(&any);
}

static void test_any_size_alloc_on_fixed_size_allocator_returns_null(void **state)
{
	static struct bpf_mem_alloc fixed;

	assert_int_equal(bpf_mem_alloc_init(&fixed, 24, false), 0);
	assert_null(bpf_mem_alloc(&fixed, 8));
	assert_null(bpf_mem_alloc(&fixed, 24));
	bpf_mem_alloc_destroy(&fixed);
}

static void test_unknown_gfp_flags_return_null(void **state)
{
	static const unsigned int bad[] = { 0x2, 0x3, 0x10, 0x80000000u, ~0u };
	static struct bpf_mem_alloc fixed;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&fixed, 24, false), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_null(bpf_mem_cache_alloc_flags(&fixed, bad[i]));
	/* the cache was not empty: the flags alone decided */
	p = bpf_mem_cache_alloc_flags(&fixed, BPFMEM_GFP_NOWAIT);
	assert_non_null(p);
	bpf_mem_cache_free(&fixed, p);
	bpf_mem_alloc_destroy(&fixed);
}

static void test_attach_out_of_range_or_with_unknown_flags_is_einval(void **state)
{
	int nr = bpfmem_nr_cpus();

	assert_int_equal(bpfmem_thread_attach(-1, 0), -EINVAL);
	assert_int_equal(bpfmem_thread_attach(INT_MIN, 0), -EINVAL);
	assert_int_equal(bpfmem_thread_attach(nr, 0), -EINVAL);
	assert_int_equal(bpfmem_thread_attach(INT_MAX, 0), -EINVAL);
	assert_int_equal(bpfmem_thread_attach(0, 0x2), -EINVAL);
	assert_int_equal(bpfmem_thread_attach(1, ~0u), -EINVAL);
	/* a rejected attach leaves the caller where it was */
	assert_int_equal(bpfmem_current_cpu(), 0);
	assert_false(cpu_in_use(1));
}

static void test_per_cpu_ptr_with_bad_cpu_or_null_is_null(void **state)
{
	static struct bpf_mem_alloc pcpu;
	void *p, *pptr;

	assert_int_equal(bpf_mem_alloc_init(&pcpu, 16, true), 0);
	p = bpf_mem_cache_alloc(&pcpu);
	assert_non_null(p);
	pptr = *(void **)p;
	assert_null(bpfmem_per_cpu_ptr(pptr, -1));
	assert_null(bpfmem_per_cpu_ptr(pptr, INT_MIN));
	assert_null(bpfmem_per_cpu_ptr(pptr, bpfmem_nr_cpus() + 1));
	assert_null(bpfmem_per_cpu_ptr(pptr, INT_MAX));
	assert_null(bpfmem_per_cpu_ptr(NULL, 0));
	assert_null(bpfmem_this_cpu_ptr(NULL));
	bpf_mem_cache_free(&pcpu, p);
	bpf_mem_alloc_destroy(&pcpu);
}

static void test_free_of_null_pointer_is_a_noop(void **state)
{
	static struct bpf_mem_alloc any, fixed;
	struct bpfmem_cache_stats before, after;

	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&fixed, 24, false), 0);
	before = t_stats(&fixed, 0);
	bpf_mem_free(&any, NULL);
	bpf_mem_free_rcu(&any, NULL);
	bpf_mem_cache_free(&fixed, NULL);
	bpf_mem_cache_free_rcu(&fixed, NULL);
	bpf_mem_cache_raw_free(NULL);
	irq_work_flush();
	after = t_stats(&fixed, 0);
	assert_int_equal(after.cached, before.cached);
	assert_int_equal(after.backend_frees, before.backend_frees);
	bpf_mem_alloc_destroy(&any);
	bpf_mem_alloc_destroy(&fixed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_null_allocator_is_rejected_by_every_entry_point),
		cmocka_unit_test(test_zeroed_allocator_is_uninitialised_everywhere),
		cmocka_unit_test(test_garbage_allocator_is_rejected_then_initialisable),
		cmocka_unit_test(test_negative_size_to_init_is_einval),
		cmocka_unit_test(test_percpu_size_zero_is_einval),
		cmocka_unit_test(test_percpu_size_above_4096_is_einval),
		cmocka_unit_test(test_percpu_unit_init_rejects_bad_sizes_and_kinds),
		cmocka_unit_test(test_destroy_twice_is_a_noop_and_leaves_allocator_zeroed),
		cmocka_unit_test(test_alloc_from_destroyed_allocator_returns_null),
		cmocka_unit_test(test_init_twice_is_ebusy_and_keeps_the_first),
		cmocka_unit_test(test_cache_alloc_on_any_size_allocator_returns_null),
		cmocka_unit_test(test_any_size_alloc_on_fixed_size_allocator_returns_null),
		cmocka_unit_test(test_unknown_gfp_flags_return_null),
		cmocka_unit_test(test_attach_out_of_range_or_with_unknown_flags_is_einval),
		cmocka_unit_test(test_per_cpu_ptr_with_bad_cpu_or_null_is_null),
		cmocka_unit_test(test_free_of_null_pointer_is_a_noop),
	};

	return t_run(tests);
}
