/* SPDX-License-Identifier: MIT */
/*
 * Memory accounting: which group an allocator charges, how much, the byte
 * limit, and the references allocators take on their group.
 */
#include "helpers.h"

#include "kernel/memcg.h"

/* Objects the allocator holds now, cached or handed out, in class `idx`. */
static unsigned long held_objects(const struct bpf_mem_alloc *ma, int idx)
{
	struct bpfmem_cache_stats st = t_stats(ma, idx);

	return st.backend_allocs - st.backend_frees;
}

static void test_init_charges_the_callers_current_group(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpfmem_objcg *cg = bpfmem_objcg_create(0);
	struct bpfmem_objcg *old;
	void *p[100];

	assert_non_null(cg);
	old = bpfmem_objcg_set_current(cg);
	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	bpfmem_objcg_set_current(old);
	assert_true(held_objects(&ma, 0) > 0);
	assert_true(bpfmem_objcg_usage(cg) >= 108 * held_objects(&ma, 0));
	/* charging follows the allocator, not the thread's current group */
	for (int i = 0; i < 100; i++) {
		p[i] = bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL);
		assert_non_null(p[i]);
		irq_work_flush();
	}
	assert_true(held_objects(&ma, 0) >= 100);
	assert_true(bpfmem_objcg_usage(cg) >= 108 * held_objects(&ma, 0));
	for (int i = 0; i < 100; i++)
		bpf_mem_cache_free(&ma, p[i]);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(bpfmem_objcg_usage(cg), 0);
	bpfmem_objcg_put(cg);
}

static void test_init_without_current_group_charges_nobody(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpfmem_objcg *cg = bpfmem_objcg_create(0);
	struct bpfmem_objcg *old = bpfmem_objcg_set_current(NULL);

	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	bpfmem_objcg_set_current(cg);
	/* allocations after init still charge the allocator's group (none) */
	void *p = bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL);

	assert_non_null(p);
	irq_work_flush();
	assert_int_equal(bpfmem_objcg_usage(cg), 0);
	bpfmem_objcg_set_current(old);
	bpf_mem_cache_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
	bpfmem_objcg_put(cg);
}

static void test_any_size_usage_covers_every_held_object_and_returns_to_zero(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpfmem_objcg *cg = bpfmem_objcg_create(0);
	struct bpfmem_objcg *old = bpfmem_objcg_set_current(cg);
	unsigned long need = 0;
	void *p[NUM_CACHES];

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	bpfmem_objcg_set_current(old);
	for (int i = 0; i < NUM_CACHES; i++) {
		p[i] = bpf_mem_alloc(&ma, bpf_mem_sizes[i] - T_HDR);
		assert_non_null(p[i]);
	}
	irq_work_flush();
	for (int i = 0; i < NUM_CACHES; i++)
		need += (unsigned long)bpf_mem_sizes[i] * held_objects(&ma, i);
	assert_true(bpfmem_objcg_usage(cg) >= need);
	for (int i = 0; i < NUM_CACHES; i++)
		bpf_mem_free_rcu(&ma, p[i]);
	bpf_mem_alloc_destroy(&ma);
	bpfmem_rcu_barrier();	/* destroy may defer its RCU wait (SPEC) */
	assert_int_equal(bpfmem_objcg_usage(cg), 0);
	bpfmem_objcg_put(cg);
}

static void test_percpu_usage_covers_every_held_object(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpfmem_objcg *cg = bpfmem_objcg_create(0);
	struct bpfmem_objcg *old = bpfmem_objcg_set_current(cg);
	void *p[4];

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, true), 0);
	bpfmem_objcg_set_current(old);
	for (int i = 0; i < 4; i++)
		p[i] = bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL);
	irq_work_flush();
	assert_true(bpfmem_objcg_usage(cg) >= 64 * held_objects(&ma, 0));
	for (int i = 0; i < 4; i++)
		bpf_mem_cache_free(&ma, p[i]);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(bpfmem_objcg_usage(cg), 0);
	bpfmem_objcg_put(cg);
}

static void test_limit_makes_allocations_fail_instead_of_exceeding_it(void **state)
{
	enum { LIMIT = 20 * 108 };
	static struct bpf_mem_alloc ma;
	struct bpfmem_objcg *cg = bpfmem_objcg_create(LIMIT);
	struct bpfmem_objcg *old = bpfmem_objcg_set_current(cg);
	void *p[100];
	int n = 0;

	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	bpfmem_objcg_set_current(old);
	while (n < 100 && (p[n] = bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL))) {
		n++;
		irq_work_flush();
		assert_true(bpfmem_objcg_usage(cg) <= LIMIT);
	}
	/* at most 20 objects of 108 bytes fit, wherever they are */
	assert_true(n >= 1 && n <= 20);
	assert_null(bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL));
	assert_true(bpfmem_objcg_usage(cg) <= LIMIT);
	while (n)
		bpf_mem_cache_free(&ma, p[--n]);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(bpfmem_objcg_usage(cg), 0);
	bpfmem_objcg_put(cg);
}

static void test_limit_makes_any_size_allocations_fail_not_exceed(void **state)
{
	enum { LIMIT = 3000 };
	static struct bpf_mem_alloc ma;
	struct bpfmem_objcg *cg = bpfmem_objcg_create(LIMIT);
	struct bpfmem_objcg *old = bpfmem_objcg_set_current(cg);
	void *p[100];
	int n = 0;

	/* even the prefill does not fit: init still succeeds */
	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	bpfmem_objcg_set_current(old);
	assert_true(bpfmem_objcg_usage(cg) <= LIMIT);
	for (int i = 0; i < 100; i++) {
		void *q = bpf_mem_alloc(&ma, 100);

		if (q)
			p[n++] = q;
		irq_work_flush();
		assert_true(bpfmem_objcg_usage(cg) <= LIMIT);
	}
	/* 128-byte units: at most 23 fit under 3000 bytes */
	assert_true(n <= LIMIT / 128);
	while (n)
		bpf_mem_free(&ma, p[--n]);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(bpfmem_objcg_usage(cg), 0);
	bpfmem_objcg_put(cg);
}

static void test_raw_free_uncharges_the_group(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpfmem_objcg *cg = bpfmem_objcg_create(0);
	struct bpfmem_objcg *old = bpfmem_objcg_set_current(cg);
	size_t before;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	bpfmem_objcg_set_current(old);
	p = bpf_mem_cache_alloc(&ma);
	assert_non_null(p);
	irq_work_flush();
	before = bpfmem_objcg_usage(cg);
	bpf_mem_cache_raw_free(p);
	assert_true(before - bpfmem_objcg_usage(cg) >= 108);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(bpfmem_objcg_usage(cg), 0);
	bpfmem_objcg_put(cg);
}

static void test_percpu_init_takes_its_own_reference(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpfmem_objcg *cg = bpfmem_objcg_create(0);
	void *p;

	assert_int_equal(bpf_mem_alloc_percpu_init(&ma, cg), 0);
	assert_int_equal(atomic_load(&cg->refcnt), 2);
	bpfmem_objcg_put(cg);	/* the creator's reference */
	assert_int_equal(atomic_load(&cg->refcnt), 1);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&ma, 64), 0);
	p = bpf_mem_alloc(&ma, 64);
	assert_non_null(p);
	assert_true(bpfmem_objcg_usage(cg) >= 64 * held_objects(&ma, t_class_idx(64)));
	bpf_mem_free(&ma, p);
	/* drops the last reference: LeakSanitizer reports cg if it is not freed */
	bpf_mem_alloc_destroy(&ma);
}

static void test_init_references_the_current_group(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpfmem_objcg *cg = bpfmem_objcg_create(0);
	struct bpfmem_objcg *old = bpfmem_objcg_set_current(cg);
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	bpfmem_objcg_set_current(old);
	assert_int_equal(atomic_load(&cg->refcnt), 2);
	bpfmem_objcg_put(cg);
	p = bpf_mem_alloc(&ma, 10);
	assert_non_null(p);
	assert_true(bpfmem_objcg_usage(cg) > 0);
	bpf_mem_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

static void test_put_null_is_a_noop_and_usage_of_null_is_zero(void **state)
{
	bpfmem_objcg_put(NULL);
	assert_int_equal(bpfmem_objcg_usage(NULL), 0);
}

static void test_new_group_has_no_usage(void **state)
{
	struct bpfmem_objcg *cg = bpfmem_objcg_create(4096);

	assert_non_null(cg);
	assert_int_equal(bpfmem_objcg_usage(cg), 0);
	bpfmem_objcg_put(cg);
}

static void test_set_current_returns_the_previous_group(void **state)
{
	struct bpfmem_objcg *a = bpfmem_objcg_create(0), *b = bpfmem_objcg_create(0);
	struct bpfmem_objcg *orig = bpfmem_objcg_set_current(a);

	assert_ptr_equal(bpfmem_objcg_set_current(b), a);
	assert_ptr_equal(bpfmem_objcg_set_current(NULL), b);
	assert_null(bpfmem_objcg_set_current(orig));
	bpfmem_objcg_put(a);
	bpfmem_objcg_put(b);
}

static void *current_of_new_thread(void *arg)
{
	return bpfmem_objcg_set_current(NULL);
}

static void test_current_group_is_per_thread(void **state)
{
	struct bpfmem_objcg *a = bpfmem_objcg_create(0);
	struct bpfmem_objcg *orig = bpfmem_objcg_set_current(a);
	void *other;
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, current_of_new_thread, NULL), 0);
	assert_int_equal(pthread_join(t, &other), 0);
	assert_null(other);
	assert_ptr_equal(bpfmem_objcg_set_current(orig), a);
	bpfmem_objcg_put(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_charges_the_callers_current_group),
		cmocka_unit_test(test_init_without_current_group_charges_nobody),
		cmocka_unit_test(test_any_size_usage_covers_every_held_object_and_returns_to_zero),
		cmocka_unit_test(test_percpu_usage_covers_every_held_object),
		cmocka_unit_test(test_limit_makes_allocations_fail_instead_of_exceeding_it),
		cmocka_unit_test(test_limit_makes_any_size_allocations_fail_not_exceed),
		cmocka_unit_test(test_raw_free_uncharges_the_group),
		cmocka_unit_test(test_percpu_init_takes_its_own_reference),
		cmocka_unit_test(test_init_references_the_current_group),
		cmocka_unit_test(test_put_null_is_a_noop_and_usage_of_null_is_zero),
		cmocka_unit_test(test_new_group_has_no_usage),
		cmocka_unit_test(test_set_current_returns_the_previous_group),
		cmocka_unit_test(test_current_group_is_per_thread),
	};

	return t_run(tests);
}
