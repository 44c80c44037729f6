/* SPDX-License-Identifier: MIT */
/*
 * The per-CPU cache algorithm: LIFO reuse, watermarks and batch per class,
 * prefill, refill below the low watermark, trim above the high one, the
 * GFP flags and raw free.
 */
#include "helpers.h"

#include <stdlib.h>

#define HOLD_MAX 400

/* One allocation, then let any refill it raised land: keeps CPU 0 supplied
 * so that the shared CPU never serves the test. */
static void *alloc_flushed(struct bpf_mem_alloc *ma)
{
	void *p = bpf_mem_cache_alloc(ma);

	assert_non_null(p);
	irq_work_flush();
	return p;
}

static void test_fixed_free_then_alloc_returns_same_pointer(void **state)
{
	static struct bpf_mem_alloc ma;
	void *p, *q;

	assert_int_equal(bpf_mem_alloc_init(&ma, 40, false), 0);
	p = bpf_mem_cache_alloc(&ma);
	assert_non_null(p);
	bpf_mem_cache_free(&ma, p);
	q = bpf_mem_cache_alloc(&ma);
	assert_ptr_equal(q, p);
	bpf_mem_cache_free(&ma, q);
	bpf_mem_alloc_destroy(&ma);
}

static void test_any_size_frees_are_reused_last_in_first_out(void **state)
{
	static struct bpf_mem_alloc ma;
	void *a, *b, *c;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	a = bpf_mem_alloc(&ma, 100);
	b = bpf_mem_alloc(&ma, 100);
	c = bpf_mem_alloc(&ma, 100);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	bpf_mem_free(&ma, a);
	bpf_mem_free(&ma, b);
	bpf_mem_free(&ma, c);
	assert_ptr_equal(bpf_mem_alloc(&ma, 100), c);
	assert_ptr_equal(bpf_mem_alloc(&ma, 100), b);
	assert_ptr_equal(bpf_mem_alloc(&ma, 100), a);
	bpf_mem_free(&ma, a);
	bpf_mem_free(&ma, b);
	bpf_mem_free(&ma, c);
	bpf_mem_alloc_destroy(&ma);
}

/* Every allocator has caches of its own, even for the same size. */
static void test_allocators_do_not_share_objects(void **state)
{
	static struct bpf_mem_alloc a, b;
	void *p, *q;

	assert_int_equal(bpf_mem_alloc_init(&a, 64, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&b, 64, false), 0);
	p = bpf_mem_cache_alloc(&a);
	assert_non_null(p);
	bpf_mem_cache_free(&a, p);
	q = bpf_mem_cache_alloc(&b);
	assert_non_null(q);
	assert_ptr_not_equal(q, p);
	assert_ptr_equal(t_owner(q), t_cache(&b, 0, 0));
	bpf_mem_cache_free(&b, q);
	bpf_mem_alloc_destroy(&a);
	bpf_mem_alloc_destroy(&b);
}

struct marks {
	int unit, low, high, batch;
};

static void assert_marks(const struct bpf_mem_alloc *ma, int idx, const struct marks *m)
{
	struct bpfmem_cache_stats st = t_stats(ma, idx);
	int cpus[] = { 0, bpfmem_nr_cpus() /* shared */ };

	assert_int_equal(st.unit_size, m->unit);
	assert_int_equal(st.low_watermark, m->low);
	assert_int_equal(st.high_watermark, m->high);
	assert_int_equal(st.batch, m->batch);
	for (size_t i = 0; i < sizeof(cpus) / sizeof(cpus[0]); i++) {
		struct bpf_mem_cache *c = t_cache(ma, idx, cpus[i]);

		assert_int_equal(c->unit_size, m->unit);
		assert_int_equal(c->low_watermark, m->low);
		assert_int_equal(c->high_watermark, m->high);
		assert_int_equal(c->batch, m->batch);
	}
	/* the copies of CPUs nobody used yet stay zeroed until their first use */
	assert_int_equal(t_cache(ma, idx, 1)->unit_size, 0);
	assert_int_equal(t_cache(ma, idx, bpfmem_nr_cpus() - 1)->unit_size, 0);
}

static void test_watermarks_of_every_any_size_class(void **state)
{
	/* in the library's class order: 96, 192, then 16..4096 */
	static const struct marks want[NUM_CACHES] = {
		{ 96, 32, 96, 48 },  { 192, 32, 96, 48 }, { 16, 32, 96, 48 },
		{ 32, 32, 96, 48 },  { 64, 32, 96, 48 },  { 128, 32, 96, 48 },
		{ 256, 32, 96, 48 }, { 512, 16, 48, 24 }, { 1024, 8, 24, 12 },
		{ 2048, 4, 12, 6 },  { 4096, 2, 6, 3 },
	};
	static struct bpf_mem_alloc ma;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (int i = 0; i < NUM_CACHES; i++)
		assert_marks(&ma, i, &want[i]);
	bpf_mem_alloc_destroy(&ma);
}

/* The kernel's class of `size` bytes: the smallest that holds them. */
static int kernel_class_size(size_t size)
{
	static const int classes[] = { 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096 };

	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
		if (size <= (size_t)classes[i])
			return classes[i];
	return -1;
}

static int class_of_object(void *p)
{
	return (*(struct bpf_mem_cache **)((char *)p - LLIST_NODE_SZ))->unit_size;
}

/* Every request size, through the library's lookup table: its object comes
 * from the class of the request plus the header; per-CPU objects (no
 * header) from the class of the request itself. */
static void test_every_request_size_gets_the_kernels_class(void **state)
{
	static struct bpf_mem_alloc ma, pcpu;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_percpu_init(&pcpu, NULL), 0);
	for (int i = 0; i < NUM_CACHES; i++)
		assert_int_equal(bpf_mem_alloc_percpu_unit_init(&pcpu, bpf_mem_sizes[i]), 0);
	for (size_t size = 1; size <= BPFMEM_ALLOC_SIZE_MAX - LLIST_NODE_SZ; size++) {
		p = bpf_mem_alloc(&ma, size);
		assert_non_null(p);
		assert_int_equal(class_of_object(p), kernel_class_size(size + LLIST_NODE_SZ));
		bpf_mem_free(&ma, p);
	}
	assert_null(bpf_mem_alloc(&ma, BPFMEM_ALLOC_SIZE_MAX - LLIST_NODE_SZ + 1));
	for (size_t size = 1; size <= BPFMEM_ALLOC_SIZE_MAX; size++) {
		p = bpf_mem_alloc(&pcpu, size);
		assert_non_null(p);
		assert_int_equal(class_of_object(p), kernel_class_size(size));
		bpf_mem_free(&pcpu, p);
		if (size % 64 == 0)
			irq_work_flush();	/* the per-CPU classes hold 1 to 3 */
	}
	assert_null(bpf_mem_alloc(&pcpu, BPFMEM_ALLOC_SIZE_MAX + 1));
	assert_null(bpf_mem_alloc(&pcpu, 0));
	bpf_mem_alloc_destroy(&pcpu);
	bpf_mem_alloc_destroy(&ma);
}

static void test_watermarks_of_fixed_sizes(void **state)
{
	/* unit = size + 8; low = max(8192 / unit, 1), high = max(24576 / unit, 3) above 256 */
	static const struct {
		int size;
		struct marks m;
	} want[] = {
		{ 1, { 9, 32, 96, 48 } },	  { 100, { 108, 32, 96, 48 } },
		{ 248, { 256, 32, 96, 48 } },	  { 249, { 257, 31, 95, 48 } },
		{ 300, { 308, 26, 79, 39 } },	  { 4096, { 4104, 1, 5, 3 } },
		{ 8192, { 8200, 1, 3, 1 } },	  { 10000, { 10008, 1, 3, 1 } },
	};

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		static struct bpf_mem_alloc ma;

		assert_int_equal(bpf_mem_alloc_init(&ma, want[i].size, false), 0);
		assert_marks(&ma, 0, &want[i].m);
		bpf_mem_alloc_destroy(&ma);
	}
}

static void test_percpu_watermarks_are_low_1_high_3_batch_1(void **state)
{
	static const int fixed[] = { 8, 48, 256, 4096 };
	static struct bpf_mem_alloc ma;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		struct marks m = { fixed[i], 1, 3, 1 };

		assert_int_equal(bpf_mem_alloc_init(&ma, fixed[i], true), 0);
		assert_marks(&ma, 0, &m);
		bpf_mem_alloc_destroy(&ma);
	}
	assert_int_equal(bpf_mem_alloc_percpu_init(&ma, NULL), 0);
	for (int i = 0; i < NUM_CACHES; i++) {
		struct marks m = { bpf_mem_sizes[i], 1, 3, 1 };

		assert_int_equal(bpf_mem_alloc_percpu_unit_init(&ma, bpf_mem_sizes[i]), 0);
		assert_marks(&ma, i, &m);
	}
	bpf_mem_alloc_destroy(&ma);
}

static void test_prefill_gives_initialising_cpu_4_small_or_1_large_object(void **state)
{
	static const struct {
		int size;
		bool percpu;
		int want;
	} fixed[] = { { 248, false, 4 }, { 249, false, 1 }, { 8192, false, 1 }, { 16, true, 1 } };
	static struct bpf_mem_alloc ma;

	/* CPU 1 is owned by nobody: it is filled on first use, not at init */
	assert_false(cpu_in_use(1));
	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (int i = 0; i < NUM_CACHES; i++) {
		assert_int_equal(t_free_cnt(t_cache(&ma, i, 0)), bpf_mem_sizes[i] <= 256 ? 4 : 1);
		assert_int_equal(t_free_cnt(t_cache(&ma, i, 1)), 0);
	}
	bpf_mem_alloc_destroy(&ma);
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		assert_int_equal(bpf_mem_alloc_init(&ma, fixed[i].size, fixed[i].percpu), 0);
		assert_int_equal(t_free_cnt(t_cache(&ma, 0, 0)), fixed[i].want);
		assert_int_equal(t_free_cnt(t_cache(&ma, 0, 1)), 0);
		bpf_mem_alloc_destroy(&ma);
	}
}

static void test_alloc_below_low_watermark_refills_one_batch(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpfmem_cache_stats before, after;
	struct slab_stats s0, s1;
	struct bpf_mem_cache *c;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	c = t_cache(&ma, 0, 0);
	before = t_stats(&ma, 0);
	s0 = t_slab();
	p = bpf_mem_cache_alloc(&ma);	/* 4 -> 3: below low (32) */
	assert_non_null(p);
	irq_work_flush();
	after = t_stats(&ma, 0);
	s1 = t_slab();
	assert_int_equal(t_free_cnt(c) + t_mailbox_cnt(c), 3 + 48);
	assert_int_equal(after.refills - before.refills, 1);
	assert_int_equal(after.backend_allocs - before.backend_allocs, 48);
	assert_int_equal(s1.allocs - s0.allocs, 48);
	bpf_mem_cache_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

static void test_refill_batch_is_used_when_the_free_list_runs_dry(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpf_mem_cache *c;
	void *p[5];

	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	c = t_cache(&ma, 0, 0);
	p[0] = bpf_mem_cache_alloc(&ma);
	irq_work_flush();	/* the batch of 48 is waiting */
	for (int i = 1; i < 5; i++)
		p[i] = bpf_mem_cache_alloc(&ma);
	/* three from the prefill, then one from the batch */
	assert_int_equal(t_free_cnt(c), 47);
	assert_int_equal(t_mailbox_cnt(c), 0);
	for (int i = 0; i < 5; i++) {
		assert_non_null(p[i]);
		assert_ptr_equal(t_owner(p[i]), c);
	}
	for (int i = 0; i < 5; i++)
		bpf_mem_cache_free(&ma, p[i]);
	bpf_mem_alloc_destroy(&ma);
}

/*
 * Holds `n` objects of a fixed-size 100 allocator, then frees the newest
 * ones until CPU 0's list crosses the high watermark (96) once.  Returns
 * how many are still held.
 */
static unsigned long ready_before_trim;	/* ready chains just before the trim */

static int hold_then_trim(struct bpf_mem_alloc *ma, void **held, int n)
{
	struct bpf_mem_cache *c = t_cache(ma, 0, 0);
	int cnt;

	for (int i = 0; i < n; i++)
		held[i] = alloc_flushed(ma);
	cnt = t_free_cnt(c);
	assert_true(cnt <= 96 && n >= 97 - cnt);
	while (cnt < 96) {
		bpf_mem_cache_free(ma, held[--n]);
		cnt++;
		assert_int_equal(t_free_cnt(c), cnt);
	}
	irq_work_flush();
	ready_before_trim = t_mailbox_cnt(c);
	bpf_mem_cache_free(ma, held[--n]);	/* 97 > high */
	return n;
}

static void test_free_above_high_watermark_trims_to_middle(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpfmem_cache_stats before, after;
	struct slab_stats s0, s1;
	void **held = calloc(HOLD_MAX, sizeof(void *));
	int n;

	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	before = t_stats(&ma, 0);
	s0 = t_slab();	/* the grace period may end before we look again */
	n = hold_then_trim(&ma, held, 120);
	/* (32 + 96) / 2 stay on the list, 33 wait ready for reuse by their
	 * origin cache, which is this one: nothing goes to the refill thread */
	assert_int_equal(t_free_cnt(t_cache(&ma, 0, 0)), 64);
	assert_int_equal(t_mailbox_cnt(t_cache(&ma, 0, 0)), ready_before_trim + 33);
	assert_true(llist_empty(&t_cache(&ma, 0, 0)->trim_llist));
	bpfmem_rcu_barrier();
	s1 = t_slab();
	after = t_stats(&ma, 0);
	assert_int_equal(after.trims - before.trims, 1);
	assert_int_equal(after.backend_frees - before.backend_frees, 0);
	assert_int_equal(s1.frees - s0.frees, 0);
	assert_int_equal(t_free_cnt(t_cache(&ma, 0, 0)), 64);
	while (n)
		bpf_mem_cache_free(&ma, held[--n]);
	bpf_mem_alloc_destroy(&ma);
	free(held);
}

static bool held_before(void **held, int n, void *p)
{
	for (int i = 0; i < n; i++)
		if (held[i] == p)
			return true;
	return false;
}

/* The objects the trim cut off are the next ones handed out once the list
 * runs dry, before anything new from the backend, with no refill needed. */
static void test_trimmed_objects_are_reused_before_the_backend(void **state)
{
	static struct bpf_mem_alloc ma;
	void **held = calloc(HOLD_MAX, sizeof(void *));
	void **old = calloc(HOLD_MAX, sizeof(void *));
	struct bpf_mem_cache *c;
	int n, nold = 120, reused = 0;

	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	c = t_cache(&ma, 0, 0);
	n = hold_then_trim(&ma, held, 120);
	/* every object this cache has ever handed out or cached */
	memcpy(old, held, sizeof(void *) * 120);
	for (struct llist_node *p = c->free_llist.first; p; p = p->next)
		old[nold++] = (char *)p + T_HDR;
	for (int i = 0; i < REUSE_SLOTS; i++)
		for (struct llist_node *p = atomic_load(&c->reuse_chain[i]);
		     p && p != REUSE_BUSY; p = p->next)
			old[nold++] = (char *)p + T_HDR;
	assert_int_equal(nold, 120 + 64 + ready_before_trim + 33);
	/* the 64 on the list, then the 33 trimmed ones */
	for (int i = 0; i < 64 + 33; i++) {
		void *p = bpf_mem_cache_alloc(&ma);

		assert_non_null(p);
		reused += held_before(old, nold, p);
		held[n++] = p;
	}
	assert_int_equal(reused, 64 + 33);
	while (n)
		bpf_mem_cache_free(&ma, held[--n]);
	bpf_mem_alloc_destroy(&ma);
	free(held);
	free(old);
}

static void test_fixed_sizes_above_4096_serve_whole_objects(void **state)
{
	static const int sizes[] = { 4097, 8192, 10000, 65536 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		static struct bpf_mem_alloc ma;
		void *p[4];

		assert_int_equal(bpf_mem_alloc_init(&ma, sizes[i], false), 0);
		for (int j = 0; j < 4; j++) {
			p[j] = alloc_flushed(&ma);
			assert_int_equal(t_owner(p[j])->unit_size, sizes[i] + T_HDR);
			memset(p[j], j, sizes[i]);	/* ASan: all of it is ours */
		}
		for (int j = 0; j < 4; j++)
			for (int k = 0; k < sizes[i]; k += 509)
				assert_int_equal(((unsigned char *)p[j])[k], j);
		for (int j = 3; j >= 0; j--)
			bpf_mem_cache_free(&ma, p[j]);
		assert_ptr_equal(bpf_mem_cache_alloc(&ma), p[0]);
		bpf_mem_cache_free(&ma, p[0]);
		bpf_mem_alloc_destroy(&ma);
	}
}

static sem_t blocker_started, blocker_go;

static void blocker_fn(struct irq_work *w)
{
	sem_post(&blocker_started);
	sem_wait(&blocker_go);
}

struct first_alloc {
	struct bpf_mem_alloc *ma;
	int cpu;
	void *p;
};

static void *first_alloc_on_cpu(void *arg)
{
	struct first_alloc *f = arg;

	if (bpfmem_thread_attach(f->cpu, 0) == 0)
		f->p = bpf_mem_alloc(f->ma, 4088);
	bpfmem_thread_detach();
	return NULL;
}

/*
 * SPEC: CPUs not in use at init are prefilled "when they are first used".
 * The refill thread is held busy here, as under load, so only that prefill
 * can serve the first allocation of each new CPU.
 */
static void test_first_alloc_on_a_cpu_unused_at_init_succeeds(void **state)
{
	static struct bpf_mem_alloc ma;
	static struct irq_work blocker;
	struct first_alloc f[3];
	pthread_t t;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	sem_init(&blocker_started, 0, 0);
	sem_init(&blocker_go, 0, 0);
	init_irq_work(&blocker, blocker_fn);
	assert_true(irq_work_queue(&blocker));
	sem_wait(&blocker_started);
	for (int i = 0; i < 3; i++) {
		f[i] = (struct first_alloc){ .ma = &ma, .cpu = 3 + i };
		assert_int_equal(pthread_create(&t, NULL, first_alloc_on_cpu, &f[i]), 0);
		assert_int_equal(pthread_join(t, NULL), 0);
	}
	sem_post(&blocker_go);
	irq_work_sync(&blocker);
	for (int i = 0; i < 3; i++)
		bpf_mem_free(&ma, f[i].p);
	for (int i = 0; i < 3; i++)
		assert_non_null(f[i].p);
	bpf_mem_alloc_destroy(&ma);
}

static void test_every_class_refills_one_batch_below_low(void **state)
{
	static struct bpf_mem_alloc ma;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (int i = 0; i < NUM_CACHES; i++) {
		struct bpf_mem_cache *c = t_cache(&ma, i, 0);
		int prefill = t_free_cnt(c);
		void *p = bpf_mem_alloc(&ma, bpf_mem_sizes[i] - T_HDR);

		assert_non_null(p);
		irq_work_flush();
		assert_int_equal(t_free_cnt(c) + t_mailbox_cnt(c), prefill - 1 + c->batch);
		bpf_mem_free(&ma, p);
	}
	bpf_mem_alloc_destroy(&ma);
}

static void test_every_class_trims_to_middle_above_high(void **state)
{
	static struct bpf_mem_alloc ma;
	void **held = calloc(HOLD_MAX, sizeof(void *));

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (int i = 0; i < NUM_CACHES; i++) {
		struct bpf_mem_cache *c = t_cache(&ma, i, 0);
		int keep = (c->low_watermark + c->high_watermark) / 2;
		int n = c->high_watermark + 30, cnt;
		unsigned long ready, frees0 = t_stats(&ma, i).backend_frees;

		for (int j = 0; j < n; j++) {
			held[j] = bpf_mem_alloc(&ma, bpf_mem_sizes[i] - T_HDR);
			assert_non_null(held[j]);
			irq_work_flush();
		}
		for (cnt = t_free_cnt(c); cnt < c->high_watermark; cnt++)
			bpf_mem_free(&ma, held[--n]);
		irq_work_flush();
		ready = t_mailbox_cnt(c);
		bpf_mem_free(&ma, held[--n]);	/* high + 1 */
		assert_int_equal(t_free_cnt(c), keep);
		/* the rest waits ready for reuse here, its origin cache */
		assert_int_equal(t_mailbox_cnt(c), ready + c->high_watermark + 1 - keep);
		bpfmem_rcu_barrier();
		assert_int_equal(t_stats(&ma, i).backend_frees - frees0, 0);
		while (n)
			bpf_mem_free(&ma, held[--n]);
	}
	bpf_mem_alloc_destroy(&ma);
	free(held);
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;

	return x < y ? -1 : x > y;
}

static void test_gfp_kernel_never_returns_null_for_20000_allocations(void **state)
{
	enum { N = 20000 };
	static struct bpf_mem_alloc ma;
	void **p = calloc(N, sizeof(void *));

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	for (int i = 0; i < N; i++) {
		p[i] = bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL);
		assert_non_null(p[i]);
	}
	for (int i = 0; i < N; i++)
		bpf_mem_cache_free(&ma, p[i]);
	/* no object was handed out twice */
	qsort(p, N, sizeof(void *), cmp_ptr);
	for (int i = 1; i < N; i++)
		assert_ptr_not_equal(p[i - 1], p[i]);
	bpf_mem_alloc_destroy(&ma);
	free(p);
}

static void test_gfp_kernel_takes_from_the_cache_first(void **state)
{
	static struct bpf_mem_alloc ma;
	struct slab_stats s0, s1;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	p = bpf_mem_cache_alloc(&ma);
	bpf_mem_cache_free(&ma, p);
	irq_work_flush();
	s0 = t_slab();
	assert_ptr_equal(bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL), p);
	s1 = t_slab();
	assert_int_equal(s1.allocs - s0.allocs, 0);
	bpf_mem_cache_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

static void test_gfp_nowait_returns_null_when_caches_empty_and_backend_fails(void **state)
{
	static struct bpf_mem_alloc ma;
	void *p[9];
	int n = 0;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	slab_fail_every(1);
	while (n < 9 && (p[n] = bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_NOWAIT)))
		n++;
	/* the prefill of CPU 0 (4), then what the shared CPU holds (4) */
	assert_int_equal(n, 8);
	irq_work_flush();
	assert_null(bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_NOWAIT));
	assert_null(bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL));
	slab_fail_every(0);
	p[n] = bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL);
	assert_non_null(p[n]);
	for (int i = 0; i <= n; i++)
		bpf_mem_cache_free(&ma, p[i]);
	bpf_mem_alloc_destroy(&ma);
}

static void test_raw_free_returns_object_to_backend(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpfmem_cache_stats before, after;
	struct slab_stats s0, s1;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	p = bpf_mem_cache_alloc(&ma);
	assert_non_null(p);
	irq_work_flush();
	before = t_stats(&ma, 0);
	s0 = t_slab();
	bpf_mem_cache_raw_free(p);
	s1 = t_slab();
	after = t_stats(&ma, 0);
	assert_int_equal(s1.frees - s0.frees, 1);
	assert_int_equal(after.backend_frees - before.backend_frees, 1);
	assert_int_equal(after.cached, before.cached);
	bpf_mem_alloc_destroy(&ma);
}

struct on_cpu5 {
	struct bpf_mem_alloc *ma;
	void *p;		/* freed on CPU 5, then allocated again there */
	void *q;
};

static void *free_then_alloc_on_cpu5(void *arg)
{
	struct on_cpu5 *o = arg;

	if (bpfmem_thread_attach(5, 0))
		return NULL;
	bpf_mem_cache_free(o->ma, o->p);
	o->q = bpf_mem_cache_alloc(o->ma);
	bpfmem_thread_detach();
	return NULL;
}

/* As in the kernel, a free goes to the freeing CPU's list, not the origin's. */
static void test_free_on_another_cpu_goes_to_that_cpus_cache(void **state)
{
	static struct bpf_mem_alloc ma;
	struct on_cpu5 o = { .ma = &ma };
	pthread_t t;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	o.p = bpf_mem_cache_alloc(&ma);
	assert_non_null(o.p);
	assert_ptr_equal(t_owner(o.p), t_cache(&ma, 0, 0));
	assert_int_equal(pthread_create(&t, NULL, free_then_alloc_on_cpu5, &o), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_ptr_equal(o.q, o.p);
	assert_ptr_equal(t_owner(o.q), t_cache(&ma, 0, 5));
	bpf_mem_cache_free(&ma, o.q);
	bpf_mem_alloc_destroy(&ma);
}

struct cpu7_use {
	struct bpf_mem_alloc *ma;
	int prefilled;		/* classes holding exactly their prefill after attach */
	int own;		/* classes whose first object came from CPU 7 itself */
};

static void *attach_cpu7_and_alloc(void *arg)
{
	struct cpu7_use *u = arg;

	if (bpfmem_thread_attach(7, 0))
		return NULL;
	for (int i = 0; i < NUM_CACHES; i++) {
		struct bpf_mem_cache *c = t_cache(u->ma, i, 7);
		void *p;

		u->prefilled += t_free_cnt(c) == (bpf_mem_sizes[i] <= 256 ? 4 : 1);
		p = bpf_mem_alloc(u->ma, bpf_mem_sizes[i] - T_HDR);
		u->own += p && t_owner(p) == c;
		bpf_mem_free(u->ma, p);
	}
	bpfmem_thread_detach();
	return NULL;
}

/* CPUs nobody used at init start empty; attaching to one prefills it. */
static void test_cpu_attached_after_init_is_prefilled(void **state)
{
	static struct bpf_mem_alloc ma;
	struct cpu7_use u = { .ma = &ma };
	pthread_t t;

	assert_false(cpu_in_use(7));
	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (int i = 0; i < NUM_CACHES; i++)
		assert_int_equal(t_free_cnt(t_cache(&ma, i, 7)), 0);
	assert_int_equal(pthread_create(&t, NULL, attach_cpu7_and_alloc, &u), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(u.prefilled, NUM_CACHES);
	assert_int_equal(u.own, NUM_CACHES);
	bpf_mem_alloc_destroy(&ma);
}

struct implicit_use {
	struct bpf_mem_alloc *ma;
	int served;		/* classes whose first allocation succeeded */
	int stocked;		/* classes whose CPU then had objects of its own */
};

static void *alloc_without_attach(void *arg)
{
	struct implicit_use *u = arg;

	for (int i = 0; i < NUM_CACHES; i++) {
		void *p = bpf_mem_alloc(u->ma, bpf_mem_sizes[i] - T_HDR);
		int cpu = bpfmem_current_cpu();

		irq_work_flush();
		u->served += p != NULL;
		if (cpu >= 0) {
			struct bpf_mem_cache *c = t_cache(u->ma, i, cpu);

			u->stocked += t_free_cnt(c) + t_mailbox_cnt(c) > 0;
		}
		bpf_mem_free(u->ma, p);
	}
	return NULL;
}

/* A thread that never attached gets a CPU, and objects, on its first use. */
static void test_thread_without_attach_is_served_on_first_use(void **state)
{
	static struct bpf_mem_alloc ma;
	struct implicit_use u = { .ma = &ma };
	pthread_t t;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	assert_int_equal(pthread_create(&t, NULL, alloc_without_attach, &u), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(u.served, NUM_CACHES);
	assert_int_equal(u.stocked, NUM_CACHES);
	bpf_mem_alloc_destroy(&ma);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixed_free_then_alloc_returns_same_pointer),
		cmocka_unit_test(test_any_size_frees_are_reused_last_in_first_out),
		cmocka_unit_test(test_allocators_do_not_share_objects),
		cmocka_unit_test(test_watermarks_of_every_any_size_class),
		cmocka_unit_test(test_watermarks_of_fixed_sizes),
		cmocka_unit_test(test_every_request_size_gets_the_kernels_class),
		cmocka_unit_test(test_percpu_watermarks_are_low_1_high_3_batch_1),
		cmocka_unit_test(test_prefill_gives_initialising_cpu_4_small_or_1_large_object),
		cmocka_unit_test(test_alloc_below_low_watermark_refills_one_batch),
		cmocka_unit_test(test_refill_batch_is_used_when_the_free_list_runs_dry),
		cmocka_unit_test(test_free_above_high_watermark_trims_to_middle),
		cmocka_unit_test(test_trimmed_objects_are_reused_before_the_backend),
		cmocka_unit_test(test_every_class_refills_one_batch_below_low),
		cmocka_unit_test(test_every_class_trims_to_middle_above_high),
		cmocka_unit_test(test_fixed_sizes_above_4096_serve_whole_objects),
		cmocka_unit_test(test_gfp_kernel_never_returns_null_for_20000_allocations),
		cmocka_unit_test(test_gfp_kernel_takes_from_the_cache_first),
		cmocka_unit_test(test_gfp_nowait_returns_null_when_caches_empty_and_backend_fails),
		cmocka_unit_test(test_raw_free_returns_object_to_backend),
		cmocka_unit_test(test_free_on_another_cpu_goes_to_that_cpus_cache),
		cmocka_unit_test(test_cpu_attached_after_init_is_prefilled),
		cmocka_unit_test(test_thread_without_attach_is_served_on_first_use),
		cmocka_unit_test(test_first_alloc_on_a_cpu_unused_at_init_succeeds),
	};

	return t_run(tests);
}
