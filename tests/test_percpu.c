/* SPDX-License-Identifier: MIT */
/*
 * Per-CPU allocators: the per-CPU pointer in the object's first word, one
 * copy per virtual CPU (apart, aligned, zeroed when fresh), this_cpu_ptr,
 * and the class-by-class set-up of bpf_mem_alloc_percpu_init.
 */
#include "helpers.h"

#include <stdlib.h>

static int cmp_uintptr(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Every CPU's copy, the shared overflow CPU's (cpu == nr_cpus) included:
 * 8-aligned, distinct, at least max(64, size) bytes apart.
 */
static void assert_copies_apart(void *pptr, size_t size)
{
	int nr = bpfmem_nr_cpus() + 1;
	uintptr_t *addr = calloc(nr, sizeof(*addr));
	size_t gap = size > 64 ? size : 64;

	for (int cpu = 0; cpu < nr; cpu++) {
		addr[cpu] = (uintptr_t)bpfmem_per_cpu_ptr(pptr, cpu);
		assert_true(addr[cpu] != 0);
		assert_int_equal(addr[cpu] % 8, 0);
	}
	qsort(addr, nr, sizeof(*addr), cmp_uintptr);
	for (int i = 1; i < nr; i++)
		assert_true(addr[i] - addr[i - 1] >= gap);
	free(addr);
}

static void assert_copies_zero(void *pptr, size_t size)
{
	for (int cpu = 0; cpu <= bpfmem_nr_cpus(); cpu++) {
		const unsigned char *b = bpfmem_per_cpu_ptr(pptr, cpu);

		for (size_t i = 0; i < size; i++)
			assert_int_equal(b[i], 0);
	}
}

static void test_percpu_object_first_word_is_the_percpu_pointer(void **state)
{
	static struct bpf_mem_alloc ma;
	void *p, *pptr;

	assert_int_equal(bpf_mem_alloc_init(&ma, 48, true), 0);
	p = bpf_mem_cache_alloc(&ma);
	assert_non_null(p);
	pptr = *(void **)p;
	assert_non_null(pptr);
	assert_ptr_not_equal(pptr, p);
	/* the per-CPU area is separate from the object: CPU 0's copy is writable */
	memset(bpfmem_per_cpu_ptr(pptr, 0), 0x5a, 48);
	assert_ptr_equal(*(void **)p, pptr);
	bpf_mem_cache_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

static void test_percpu_copies_are_distinct_aligned_and_a_cache_line_apart(void **state)
{
	static const int sizes[] = { 1, 8, 48, 64, 65, 100, 1000, 4096 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		static struct bpf_mem_alloc ma;
		void *p;

		assert_int_equal(bpf_mem_alloc_init(&ma, sizes[i], true), 0);
		p = bpf_mem_cache_alloc(&ma);
		assert_non_null(p);
		assert_copies_apart(*(void **)p, sizes[i]);
		bpf_mem_cache_free(&ma, p);
		bpf_mem_alloc_destroy(&ma);
	}
}

/* Threads that found every CPU taken use the shared CPU's copy: reachable
 * as cpu == nr_cpus, so that a sum over all copies includes them. */
static void test_shared_cpu_copy_is_reachable_as_cpu_nr_cpus(void **state)
{
	static struct bpf_mem_alloc ma;
	int nr = bpfmem_nr_cpus();
	char *shared, *last;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 200, true), 0);
	p = bpf_mem_cache_alloc(&ma);
	assert_non_null(p);
	shared = bpfmem_per_cpu_ptr(*(void **)p, nr);
	last = bpfmem_per_cpu_ptr(*(void **)p, nr - 1);
	assert_non_null(shared);
	assert_true(shared - last >= 200 || last - shared >= 200);
	memset(shared, 0x77, 200);	/* ASan: the whole copy is there */
	assert_int_equal(((unsigned char *)last)[0], 0);
	assert_null(bpfmem_per_cpu_ptr(*(void **)p, nr + 1));
	bpf_mem_cache_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

static void test_fresh_percpu_copies_are_zeroed(void **state)
{
	static struct bpf_mem_alloc ma;
	void *p[8];

	assert_int_equal(bpf_mem_alloc_init(&ma, 100, true), 0);
	/* more than the prefill: some come from refills, some straight from the backend */
	for (int i = 0; i < 8; i++) {
		p[i] = bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL);
		assert_non_null(p[i]);
		assert_copies_zero(*(void **)p[i], 100);
		irq_work_flush();
	}
	for (int i = 0; i < 8; i++)
		bpf_mem_cache_free(&ma, p[i]);
	bpf_mem_alloc_destroy(&ma);
}

static void test_reused_percpu_object_keeps_its_contents(void **state)
{
	static struct bpf_mem_alloc ma;
	int nr = bpfmem_nr_cpus();
	void *p, *pptr;

	assert_int_equal(bpf_mem_alloc_init(&ma, 16, true), 0);
	p = bpf_mem_cache_alloc(&ma);
	assert_non_null(p);
	pptr = *(void **)p;
	for (int cpu = 0; cpu < nr; cpu++) {
		long *v = bpfmem_per_cpu_ptr(pptr, cpu);

		v[0] = cpu + 1;
		v[1] = -cpu;
	}
	bpf_mem_cache_free(&ma, p);
	assert_ptr_equal(bpf_mem_cache_alloc(&ma), p);
	assert_ptr_equal(*(void **)p, pptr);
	for (int cpu = 0; cpu < nr; cpu++) {
		long *v = bpfmem_per_cpu_ptr(pptr, cpu);

		assert_int_equal(v[0], cpu + 1);
		assert_int_equal(v[1], -cpu);
	}
	bpf_mem_cache_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

struct on_cpu {
	int cpu;		/* attach here first; -1: never attach explicitly */
	void *pptr;
	void *this_ptr;
	int cpu_after;
};

static void *this_cpu_ptr_thread(void *arg)
{
	struct on_cpu *o = arg;

	if (o->cpu >= 0 && bpfmem_thread_attach(o->cpu, 0))
		return NULL;
	o->this_ptr = bpfmem_this_cpu_ptr(o->pptr);
	o->cpu_after = bpfmem_current_cpu();
	bpfmem_thread_detach();
	return NULL;
}

static void test_this_cpu_ptr_is_the_callers_copy(void **state)
{
	static struct bpf_mem_alloc ma;
	struct on_cpu on5 = { .cpu = 5 }, anywhere = { .cpu = -1 };
	pthread_t t;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 32, true), 0);
	p = bpf_mem_cache_alloc(&ma);
	assert_non_null(p);
	on5.pptr = anywhere.pptr = *(void **)p;
	assert_ptr_equal(bpfmem_this_cpu_ptr(on5.pptr), bpfmem_per_cpu_ptr(on5.pptr, 0));

	assert_int_equal(pthread_create(&t, NULL, this_cpu_ptr_thread, &on5), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(on5.cpu_after, 5);
	assert_ptr_equal(on5.this_ptr, bpfmem_per_cpu_ptr(on5.pptr, 5));

	/* a thread that never attached is given a CPU by the call itself */
	assert_int_equal(pthread_create(&t, NULL, this_cpu_ptr_thread, &anywhere), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_true(anywhere.cpu_after >= 0 && anywhere.cpu_after < bpfmem_nr_cpus());
	assert_ptr_equal(anywhere.this_ptr, bpfmem_per_cpu_ptr(anywhere.pptr, anywhere.cpu_after));

	bpf_mem_cache_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

static void test_percpu_unit_init_sets_up_a_class_for_bpf_mem_alloc(void **state)
{
	static struct bpf_mem_alloc ma;
	void *p;

	assert_int_equal(bpf_mem_alloc_percpu_init(&ma, NULL), 0);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&ma, 64), 0);
	p = bpf_mem_alloc(&ma, 64);
	assert_non_null(p);
	assert_int_equal(t_owner(p)->unit_size, 64);
	assert_copies_apart(*(void **)p, 64);
	assert_copies_zero(*(void **)p, 64);
	bpf_mem_free(&ma, p);
	assert_ptr_equal(bpf_mem_alloc(&ma, 64), p);
	bpf_mem_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

static void test_percpu_unit_init_of_a_set_up_class_is_a_noop(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpfmem_cache_stats before, after;
	struct slab_stats s0, s1;
	int idx = t_class_idx(64);

	assert_int_equal(bpf_mem_alloc_percpu_init(&ma, NULL), 0);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&ma, 64), 0);
	before = t_stats(&ma, idx);
	s0 = t_slab();
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&ma, 64), 0);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&ma, 33), 0);	/* same class */
	after = t_stats(&ma, idx);
	s1 = t_slab();
	assert_int_equal(after.backend_allocs, before.backend_allocs);
	assert_int_equal(after.cached, before.cached);
	assert_int_equal(after.refills, before.refills);
	assert_int_equal(s1.allocs, s0.allocs);
	bpf_mem_alloc_destroy(&ma);
}

static void test_percpu_alloc_from_a_class_not_set_up_returns_null(void **state)
{
	static struct bpf_mem_alloc ma;
	void *p;

	assert_int_equal(bpf_mem_alloc_percpu_init(&ma, NULL), 0);
	assert_null(bpf_mem_alloc(&ma, 8));
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&ma, 64), 0);
	assert_null(bpf_mem_alloc(&ma, 200));
	assert_null(bpf_mem_alloc(&ma, 16));
	p = bpf_mem_alloc(&ma, 64);
	assert_non_null(p);
	bpf_mem_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

static void test_percpu_free_rcu_is_reused_or_returned_after_barrier(void **state)
{
	static struct bpf_mem_alloc ma;
	unsigned long frees0;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, true), 0);
	p = bpf_mem_cache_alloc(&ma);
	assert_non_null(p);
	irq_work_flush();
	frees0 = t_stats(&ma, 0).backend_frees;
	bpf_mem_cache_free_rcu(&ma, p);
	bpfmem_rcu_barrier();
	assert_int_equal(t_stats(&ma, 0).backend_frees + t_ready_holds(t_cache(&ma, 0, 0), p),
			 frees0 + 1);
	bpf_mem_alloc_destroy(&ma);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_percpu_object_first_word_is_the_percpu_pointer),
		cmocka_unit_test(test_percpu_copies_are_distinct_aligned_and_a_cache_line_apart),
		cmocka_unit_test(test_shared_cpu_copy_is_reachable_as_cpu_nr_cpus),
		cmocka_unit_test(test_fresh_percpu_copies_are_zeroed),
		cmocka_unit_test(test_reused_percpu_object_keeps_its_contents),
		cmocka_unit_test(test_this_cpu_ptr_is_the_callers_copy),
		cmocka_unit_test(test_percpu_unit_init_sets_up_a_class_for_bpf_mem_alloc),
		cmocka_unit_test(test_percpu_unit_init_of_a_set_up_class_is_a_noop),
		cmocka_unit_test(test_percpu_alloc_from_a_class_not_set_up_returns_null),
		cmocka_unit_test(test_percpu_free_rcu_is_reused_or_returned_after_barrier),
	};

	return t_run(tests);
}
