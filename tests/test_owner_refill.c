/* SPDX-License-Identifier: MIT */
/*
 * The owner's own refill: an allocation that finds its cache empty and no
 * batch ready takes one from the backend itself, as the kernel's irq_work
 * runs on the allocating CPU, instead of returning NULL until the refill
 * thread gets a CPU.  Per-CPU objects, whose backend is malloc, still wait
 * for the refill thread.  (fork() against the owner's refills: test_fork.)
 */
#include "helpers.h"

#define BURST	128
#define CYCLES	1000
#define BIG	4088	/* the largest any-size request: the 4096 class, batch 3 */

static void *alloc_of(struct bpf_mem_alloc *ma, size_t size)
{
	return size ? bpf_mem_alloc(ma, size) : bpf_mem_cache_alloc(ma);
}

static void free_of(struct bpf_mem_alloc *ma, size_t size, void *p)
{
	if (size)
		bpf_mem_free(ma, p);
	else
		bpf_mem_cache_free(ma, p);
}

/*
 * From a fresh allocator, with the refill thread stalled from the start:
 * CYCLES bursts of BURST allocations then BURST frees get no NULL, the
 * first burst included, and the objects beyond the prefill came from the
 * owner's own refills, one batch each.
 */
static void bursts_from_a_fresh_cache(struct bpf_mem_alloc *ma, size_t size, int idx)
{
	static void *p[BURST];
	struct bpfmem_cache_stats before, after;
	long nulls = 0;

	irq_work_flush();	/* the prefill has landed */
	before = t_stats(ma, idx);
	t_refill_stall();
	for (int c = 0; c < CYCLES; c++) {
		int n = 0;

		for (int i = 0; i < BURST; i++) {
			void *q = alloc_of(ma, size);

			if (q)
				p[n++] = q;
			else
				nulls++;
		}
		while (n)
			free_of(ma, size, p[--n]);
	}
	after = t_stats(ma, idx);
	t_refill_resume();
	assert_int_equal(nulls, 0);
	assert_int_equal(after.refills, before.refills);
	/* the first burst outgrew the prefill: at least one refill per batch
	 * of the rest, each adding one batch */
	assert_true(after.inline_refills - before.inline_refills >=
		    (unsigned long)(BURST - (int)before.cached) / before.batch);
	assert_int_equal(after.backend_allocs - before.backend_allocs,
			 (after.inline_refills - before.inline_refills) * before.batch);
}

static void test_fixed_size_bursts_from_a_fresh_cache_get_no_null_with_the_refill_thread_stalled(
	void **state)
{
	static struct bpf_mem_alloc ma;

	assert_int_equal(bpf_mem_alloc_init(&ma, BIG, false), 0);
	bursts_from_a_fresh_cache(&ma, 0, 0);
	bpf_mem_alloc_destroy(&ma);
}

static void test_any_size_bursts_from_a_fresh_cache_get_no_null_with_the_refill_thread_stalled(
	void **state)
{
	static struct bpf_mem_alloc ma;
	static const size_t sizes[] = { 56, 504, 2040, BIG };	/* classes 64 .. 4096 */

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
		bursts_from_a_fresh_cache(&ma, sizes[i], t_class_idx(sizes[i] + T_HDR));
		bpf_mem_alloc_destroy(&ma);
	}
}

/*
 * A handler that interrupted its thread inside the cache (`active` held)
 * is served by the shared CPU's copy, which refills itself too.
 */
static void test_a_reentering_handler_is_served_by_the_shared_copys_own_refill(void **state)
{
	static struct bpf_mem_alloc ma;
	static void *p[BURST];
	int idx = t_class_idx(BIG + T_HDR);
	struct bpf_mem_cache *own, *shared;
	unsigned long shared_refills;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	free_of(&ma, BIG, alloc_of(&ma, BIG));	/* sets up this CPU's copy */
	irq_work_flush();
	own = t_cache(&ma, idx, bpfmem_current_cpu());
	shared = t_cache(&ma, idx, SHARED_CPU);
	shared_refills = atomic_load(&shared->inline_refills);
	t_refill_stall();
	local_inc_return(&own->active);	/* as the interrupted owner holds it */
	for (int i = 0; i < BURST; i++) {
		p[i] = alloc_of(&ma, BIG);
		assert_non_null(p[i]);
		assert_ptr_equal(*(struct bpf_mem_cache **)((char *)p[i] - T_HDR), shared);
	}
	local_dec(&own->active);
	t_refill_resume();
	assert_true(atomic_load(&shared->inline_refills) > shared_refills);
	for (int i = 0; i < BURST; i++)
		free_of(&ma, BIG, p[i]);
	bpf_mem_alloc_destroy(&ma);
}

/* Per-CPU objects come from malloc, which a handler may not call: an empty
 * per-CPU cache still waits for the refill thread. */
static void test_per_cpu_objects_still_wait_for_the_refill_thread(void **state)
{
	static struct bpf_mem_alloc ma;
	static void *p[64];
	int n = 0;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, true), 0);
	irq_work_flush();
	t_refill_stall();
	while (n < 64 && (p[n] = bpf_mem_cache_alloc(&ma)))
		n++;
	t_refill_resume();
	assert_true(n < 64);
	assert_int_equal(t_stats(&ma, 0).inline_refills, 0);
	while (n)
		bpf_mem_cache_free(&ma, p[--n]);
	bpf_mem_alloc_destroy(&ma);
}

/* More of the 4096 class than RCU_PENDING_MAX lets wait for a grace period */
#define RCU_BURST	(RCU_PENDING_BYTES / 4096 + 128)

/*
 * More *_free_rcu objects of the cache than RCU_PENDING_MAX wait for
 * an RCU grace period (a reader holds it): the owner that runs dry waits
 * for them, NULL once the shared CPU's objects are gone too, rather than
 * take the backend's memory for as long as the grace period lasts.
 */
static void test_an_owner_waits_for_its_free_rcu_objects_instead_of_refilling(void **state)
{
	static struct bpf_mem_alloc ma;
	static void *p[RCU_BURST];	/* 4 KiB each */
	struct bpf_mem_cache *c;
	struct t_reader *r;
	unsigned long refills, backend;
	int n;

	assert_int_equal(bpf_mem_alloc_init(&ma, BIG, false), 0);
	for (n = 0; n < RCU_BURST; n++) {
		p[n] = alloc_of(&ma, 0);
		assert_non_null(p[n]);
	}
	c = t_cache(&ma, 0, bpfmem_current_cpu());
	r = t_reader_enter(false);
	for (n = 0; n < RCU_BURST; n++)
		bpf_mem_cache_free_rcu(&ma, p[n]);
	irq_work_flush();
	assert_true(rcu_owned_in_flight(c) > RCU_PENDING_MAX(c));
	t_refill_stall();
	refills = atomic_load(&c->inline_refills);
	backend = atomic_load(&c->backend_allocs) +
		  atomic_load(&t_cache(&ma, 0, SHARED_CPU)->backend_allocs);
	for (n = 0; n < RCU_BURST && (p[n] = alloc_of(&ma, 0)); n++)
		;
	/* read before the refill thread runs what the allocations raised */
	refills = atomic_load(&c->inline_refills) - refills;
	backend = atomic_load(&c->backend_allocs) +
		  atomic_load(&t_cache(&ma, 0, SHARED_CPU)->backend_allocs) - backend;
	t_refill_resume();
	assert_true(n < RCU_BURST);
	assert_int_equal(refills, 0);
	assert_int_equal(backend, 0);
	while (n)
		free_of(&ma, 0, p[--n]);
	t_reader_leave(r);
	bpfmem_rcu_barrier();
	bpf_mem_alloc_destroy(&ma);
}

/*
 * Bursts of large objects (the 4096 class keeps 2 to 6, its slots hold
 * 24): the frees trim past the slots, the trims wait parked for the
 * owner, and the next burst takes them back.  With the refill thread
 * stalled, nothing else could bring objects back; after the first burst
 * the backend is not asked again.
 */
static void test_a_burst_of_large_objects_comes_back_from_its_own_trims(void **state)
{
	static struct bpf_mem_alloc ma;
	static void *p[BURST];
	struct bpf_mem_cache *c = NULL;
	unsigned long backend = 0;
	long nulls = 0;

	assert_int_equal(bpf_mem_alloc_init(&ma, BIG, false), 0);
	t_refill_stall();
	for (int cycle = 0; cycle < CYCLES; cycle++) {
		int n = 0;

		for (int i = 0; i < BURST; i++)
			if ((p[n] = alloc_of(&ma, 0)))
				n++;
		nulls += BURST - n;
		while (n)
			free_of(&ma, 0, p[--n]);
		c = t_cache(&ma, 0, bpfmem_current_cpu());
		if (cycle == 0)
			backend = atomic_load(&c->backend_allocs);
	}
	assert_true(atomic_load(&c->parked_cnt) > 0);
	backend = atomic_load(&c->backend_allocs) - backend;
	t_refill_resume();
	assert_int_equal(nulls, 0);
	assert_int_equal(backend, 0);
	bpf_mem_alloc_destroy(&ma);
}

/*
 * A cache that only frees parks at most TRIM_PARK_OBJS of its trims; the
 * rest go through the grace periods to the backend.
 */
static void test_parked_trims_past_the_bound_go_to_the_backend(void **state)
{
	static struct bpf_mem_alloc ma;
	static void *p[4 * TRIM_PARK_OBJS];
	struct bpf_mem_cache *c;
	unsigned long frees;

	assert_int_equal(bpf_mem_alloc_init(&ma, BIG, false), 0);
	for (int i = 0; i < 4 * TRIM_PARK_OBJS; i++) {
		p[i] = alloc_of(&ma, 0);
		assert_non_null(p[i]);
	}
	irq_work_flush();	/* only the frees' trims raise the work below */
	c = t_cache(&ma, 0, bpfmem_current_cpu());
	frees = atomic_load(&c->backend_frees);
	for (int i = 0; i < 4 * TRIM_PARK_OBJS; i++)
		free_of(&ma, 0, p[i]);
	irq_work_flush();
	bpfmem_rcu_barrier();
	/* full up to the last trim that would have gone past the bound */
	assert_true(atomic_load(&c->parked_cnt) <= TRIM_PARK_OBJS);
	assert_true(atomic_load(&c->parked_cnt) > TRIM_PARK_OBJS - c->high_watermark);
	assert_true(atomic_load(&c->backend_frees) - frees >= 2 * TRIM_PARK_OBJS);
	bpf_mem_alloc_destroy(&ma);
}

/*
 * An allocation below the low watermark that still got an object raises the
 * refill lazily: the owner refills itself if it runs dry first, so it does
 * not pay for waking the thread.  Per-CPU objects, which only the thread
 * refills, raise it at once.
 */
static void refill_raised_below_low_watermark(bool percpu, bool lazy)
{
	static struct bpf_mem_alloc ma;
	static void *p[8];
	struct irq_work *w;
	unsigned int flags = 0;
	int n = 0;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, percpu), 0);
	irq_work_flush();	/* the prefill has landed, nothing is pending */
	w = &t_cache(&ma, 0, 0)->refill_work;
	t_refill_stall();
	/* until the cache, ready chains counted, is below its low watermark
	 * (the first allocation, unless a batch was made ready at init) */
	while (n < 8 && !(flags & IRQ_WORK_PENDING) && (p[n] = bpf_mem_cache_alloc(&ma))) {
		n++;
		flags = atomic_load(&w->flags);
	}
	t_refill_resume();
	assert_true(n > 0 && p[n - 1]);
	assert_true(flags & IRQ_WORK_PENDING);
	assert_int_equal(!!(flags & IRQ_WORK_LAZY), lazy);
	irq_work_flush();
	while (n)
		bpf_mem_cache_free(&ma, p[--n]);
	bpf_mem_alloc_destroy(&ma);
}

static void test_a_refill_that_only_keeps_a_batch_ready_is_raised_lazily(void **state)
{
	refill_raised_below_low_watermark(false, true);
}

static void test_a_per_cpu_refill_is_raised_at_once(void **state)
{
	refill_raised_below_low_watermark(true, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_fixed_size_bursts_from_a_fresh_cache_get_no_null_with_the_refill_thread_stalled),
		cmocka_unit_test(
			test_any_size_bursts_from_a_fresh_cache_get_no_null_with_the_refill_thread_stalled),
		cmocka_unit_test(test_a_reentering_handler_is_served_by_the_shared_copys_own_refill),
		cmocka_unit_test(test_per_cpu_objects_still_wait_for_the_refill_thread),
		cmocka_unit_test(test_an_owner_waits_for_its_free_rcu_objects_instead_of_refilling),
		cmocka_unit_test(test_a_burst_of_large_objects_comes_back_from_its_own_trims),
		cmocka_unit_test(test_parked_trims_past_the_bound_go_to_the_backend),
		cmocka_unit_test(test_a_refill_that_only_keeps_a_batch_ready_is_raised_lazily),
		cmocka_unit_test(test_a_per_cpu_refill_is_raised_at_once),
	};

	return t_run(tests);
}
