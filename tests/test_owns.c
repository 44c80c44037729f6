// SPDX-License-Identifier: MIT
/*
 * bpfmem_owns() and bpfmem_for_each_chunk(): which memory an allocator
 * manages, answered from the backend's chunk index without touching the
 * address; and the backend's chunks going back to the system.
 */
#include "helpers.h"

#include <errno.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

/* Any-size allocations are served from a per-CPU cache that a refill may
 * still be filling: wait for it. */
static void *alloc_wait(struct bpf_mem_alloc *ma, size_t size)
{
	void *p = NULL;

	for (int i = 0; i < 100 && !(p = size ? bpf_mem_alloc(ma, size) : bpf_mem_cache_alloc(ma));
	     i++)
		irq_work_flush();
	assert_non_null(p);
	return p;
}

/* ---- hits ---- */

static void test_owns_whole_object_of_fixed_size_cache(void **state)
{
	static struct bpf_mem_alloc ma;
	char *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	p = alloc_wait(&ma, 0);
	assert_true(bpfmem_owns(&ma, p, 100));
	assert_true(bpfmem_owns(&ma, p, 1));
	assert_true(bpfmem_owns(&ma, p + 99, 1));
	assert_true(bpfmem_owns(&ma, p + 40, 60));
	bpf_mem_cache_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

static void test_owns_the_whole_size_class_of_every_any_size_object(void **state)
{
	static struct bpf_mem_alloc ma;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (int i = 0; i < NUM_CACHES; i++) {
		size_t usable = bpf_mem_sizes[i] - T_HDR;
		/* a request a few bytes short of the class: the unit is usable whole */
		size_t req = usable - 3;
		char *p = alloc_wait(&ma, req);

		assert_true(bpfmem_owns(&ma, p, req));
		assert_true(bpfmem_owns(&ma, p, usable));
		assert_false(bpfmem_owns(&ma, p, usable + 1));
		bpf_mem_free(&ma, p);
	}
	bpf_mem_alloc_destroy(&ma);
}

/* ---- edges ---- */

static void test_owns_range_crossing_the_end_of_a_unit_is_false(void **state)
{
	static struct bpf_mem_alloc ma;
	char *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	p = alloc_wait(&ma, 0);
	assert_false(bpfmem_owns(&ma, p, 65));
	assert_false(bpfmem_owns(&ma, p + 63, 2));
	/* the next unit starts right after, header first: no range spans two */
	assert_false(bpfmem_owns(&ma, p + 60, 16));
	assert_false(bpfmem_owns(&ma, p + 64, 1));
	bpf_mem_cache_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

static void test_owns_header_in_front_of_the_object_is_not_the_callers(void **state)
{
	static struct bpf_mem_alloc ma;
	char *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	p = alloc_wait(&ma, 0);
	assert_false(bpfmem_owns(&ma, p - T_HDR, T_HDR));
	assert_false(bpfmem_owns(&ma, p - 1, 1));
	assert_false(bpfmem_owns(&ma, p - 1, 2));
	assert_false(bpfmem_owns(&ma, p - T_HDR, 0));
	bpf_mem_cache_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

static void test_owns_len_zero_asks_about_the_byte_at_addr(void **state)
{
	static struct bpf_mem_alloc ma;
	char *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	p = alloc_wait(&ma, 0);
	assert_true(bpfmem_owns(&ma, p, 0));
	assert_true(bpfmem_owns(&ma, p + 63, 0));
	assert_false(bpfmem_owns(&ma, p + 64, 0));
	bpf_mem_cache_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

static void test_owns_length_that_wraps_the_address_space_is_false(void **state)
{
	static struct bpf_mem_alloc ma;
	char *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	p = alloc_wait(&ma, 0);
	assert_false(bpfmem_owns(&ma, p, SIZE_MAX));
	assert_false(bpfmem_owns(&ma, p + 8, SIZE_MAX - 4));
	bpf_mem_cache_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

/* ---- misses ---- */

static void test_owns_null_and_wild_addresses_are_false(void **state)
{
	static struct bpf_mem_alloc ma;
	static const uintptr_t wild[] = {
		0, 1, 4096, 0x7fffffffffffull, 0x800000000000ull, 0xffff800000000000ull,
		UINTPTR_MAX, UINTPTR_MAX - 7,
	};
	int on_stack;
	void *heap = malloc(64);

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	bpf_mem_free(&ma, alloc_wait(&ma, 16));
	for (size_t i = 0; i < ARRAY_SIZE(wild); i++) {
		assert_false(bpfmem_owns(&ma, (void *)wild[i], 1));
		assert_false(bpfmem_owns(&ma, (void *)wild[i], 0));
	}
	assert_false(bpfmem_owns(&ma, NULL, 8));
	assert_false(bpfmem_owns(&ma, &on_stack, sizeof(on_stack)));
	assert_false(bpfmem_owns(&ma, heap, 8));
	assert_false(bpfmem_owns(&ma, &ma, sizeof(ma)));
	free(heap);
	bpf_mem_alloc_destroy(&ma);
}

static void test_owns_unmapped_address_is_false(void **state)
{
	static struct bpf_mem_alloc ma;
	char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(page != MAP_FAILED);
	assert_int_equal(munmap(page, 4096), 0);
	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	assert_false(bpfmem_owns(&ma, page, 8));
	assert_false(bpfmem_owns(&ma, page + 100, 1));
	bpf_mem_alloc_destroy(&ma);
}

static void test_owns_null_or_zeroed_allocator_is_false(void **state)
{
	static struct bpf_mem_alloc ma, zeroed;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	p = alloc_wait(&ma, 0);
	assert_false(bpfmem_owns(NULL, p, 8));
	assert_false(bpfmem_owns(&zeroed, p, 8));
	bpf_mem_cache_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
}

static void test_owns_objects_of_another_allocator_of_the_same_size_are_false(void **state)
{
	static struct bpf_mem_alloc a, b;
	char *pa, *pb;

	assert_int_equal(bpf_mem_alloc_init(&a, 64, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&b, 64, false), 0);
	pa = alloc_wait(&a, 0);
	pb = alloc_wait(&b, 0);
	assert_true(bpfmem_owns(&a, pa, 64));
	assert_true(bpfmem_owns(&b, pb, 64));
	assert_false(bpfmem_owns(&a, pb, 64));
	assert_false(bpfmem_owns(&b, pa, 64));
	assert_false(bpfmem_owns(&a, pb, 0));
	bpf_mem_cache_free(&a, pa);
	bpf_mem_cache_free(&b, pb);
	bpf_mem_alloc_destroy(&a);
	bpf_mem_alloc_destroy(&b);
}

static void test_owns_objects_of_other_kinds_of_allocators_are_false(void **state)
{
	static struct bpf_mem_alloc any, fixed, pcpu, any2;
	char *pa, *pf, *pp, *pa2;

	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&any2, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&fixed, 56, false), 0);	/* the 64-byte class's size */
	assert_int_equal(bpf_mem_alloc_init(&pcpu, 56, true), 0);
	pa = alloc_wait(&any, 56);
	pa2 = alloc_wait(&any2, 56);
	pf = alloc_wait(&fixed, 0);
	pp = alloc_wait(&pcpu, 0);
	assert_true(bpfmem_owns(&any, pa, 56));
	assert_true(bpfmem_owns(&fixed, pf, 56));
	assert_false(bpfmem_owns(&any, pf, 8));
	assert_false(bpfmem_owns(&any, pa2, 8));
	assert_false(bpfmem_owns(&any2, pa, 8));
	assert_false(bpfmem_owns(&fixed, pa, 8));
	assert_false(bpfmem_owns(&any, pp, 8));
	assert_false(bpfmem_owns(&fixed, pp, 8));
	/* per-CPU allocators answer false even for their own objects */
	assert_false(bpfmem_owns(&pcpu, pp, 8));
	assert_false(bpfmem_owns(&pcpu, pa, 8));
	bpf_mem_free(&any, pa);
	bpf_mem_free(&any2, pa2);
	bpf_mem_cache_free(&fixed, pf);
	bpf_mem_cache_free(&pcpu, pp);
	bpf_mem_alloc_destroy(&any);
	bpf_mem_alloc_destroy(&any2);
	bpf_mem_alloc_destroy(&fixed);
	bpf_mem_alloc_destroy(&pcpu);
}

/* ---- what stays owned: cached, waiting for a grace period ---- */

static void test_owns_freed_objects_cached_or_waiting_for_a_grace_period(void **state)
{
	static struct bpf_mem_alloc ma;
	char *cached, *rcu;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	cached = alloc_wait(&ma, 0);
	rcu = alloc_wait(&ma, 0);
	bpf_mem_cache_free(&ma, cached);
	bpfmem_rcu_read_lock();
	bpf_mem_cache_free_rcu(&ma, rcu);
	/* type-stable: a reader inside its section may still look at both */
	assert_true(bpfmem_owns(&ma, cached, 64));
	assert_true(bpfmem_owns(&ma, rcu, 64));
	bpfmem_rcu_read_unlock();
	bpf_mem_alloc_destroy(&ma);
}

static void test_owns_is_false_after_destroy(void **state)
{
	static struct bpf_mem_alloc ma;
	struct slab_stats before = t_slab();
	char *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	p = alloc_wait(&ma, 0);
	bpf_mem_cache_free(&ma, p);
	bpf_mem_alloc_destroy(&ma);
	assert_false(bpfmem_owns(&ma, p, 8));
	/* and the chunk went back to the system: the index no longer names it */
	assert_int_equal(slab_lookup(p), 0);
	assert_int_equal(t_slab().chunks, before.chunks);
}

/* ---- large units: a chunk per unit ---- */

static void test_owns_large_units_of_fixed_size_caches(void **state)
{
	static const int sizes[] = { 4096, 40000, 1 << 20 };

	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		static struct bpf_mem_alloc ma;
		struct slab_stats before = t_slab();
		char *p;

		assert_int_equal(bpf_mem_alloc_init(&ma, sizes[i], false), 0);
		p = alloc_wait(&ma, 0);
		memset(p, 0xa5, sizes[i]);
		assert_true(bpfmem_owns(&ma, p, sizes[i]));
		assert_true(bpfmem_owns(&ma, p + sizes[i] - 1, 1));
		assert_false(bpfmem_owns(&ma, p + sizes[i] - 1, 2));
		assert_false(bpfmem_owns(&ma, p - 1, 1));
		bpf_mem_cache_free(&ma, p);
		bpf_mem_alloc_destroy(&ma);
		assert_int_equal(t_slab().chunks, before.chunks);
	}
}

/* ---- the backend's chunks ---- */

/* Enough 64-byte units to fill several 256 KiB chunks (4095 to a chunk). */
#define BATCH 48
#define MANY (BATCH * 417)

static void test_chunks_go_back_to_the_system_when_all_their_units_have(void **state)
{
	static struct llist_node *units[MANY];
	struct slab_stats before = t_slab();
	struct kmem_cache *s = kmem_cache_create(64, 0);
	int n = 0;

	assert_non_null(s);
	while (n < MANY) {
		struct llist_node *first, *last;
		int got = kmem_cache_alloc_bulk(s, BATCH, &first, &last);

		assert_int_equal(got, BATCH);
		for (; first; first = first->next)
			units[n++] = first;
	}
	assert_int_equal(t_slab().chunks - before.chunks, (MANY + 4094) / 4095);
	for (int i = 0; i < MANY; i++)
		kmem_cache_free(s, units[i]);
	/* one empty chunk stays against map/unmap cycles at a chunk boundary */
	assert_int_equal(t_slab().chunks - before.chunks, 1);
	kmem_cache_destroy(s);
	assert_int_equal(t_slab().chunks, before.chunks);
	assert_int_equal(t_slab().allocs - before.allocs, MANY);
	assert_int_equal(t_slab().frees - before.frees, MANY);
}

static void test_single_unit_chunks_are_unmapped_at_their_free(void **state)
{
	struct slab_stats before = t_slab();
	struct kmem_cache *s = kmem_cache_create(100000, 0);
	struct llist_node *first, *last, *unit[3];

	assert_non_null(s);
	assert_int_equal(kmem_cache_alloc_bulk(s, 3, &first, &last), 3);
	for (int i = 0; i < 3; i++, first = first->next)
		unit[i] = first;
	assert_int_equal(t_slab().chunks - before.chunks, 3);
	for (int i = 0; i < 3; i++) {
		kmem_cache_free(s, unit[i]);
		assert_int_equal(t_slab().chunks - before.chunks, 2 - i);
		assert_int_equal(slab_lookup(unit[i]), 0);
	}
	kmem_cache_destroy(s);
}

static bool page_resident(const void *addr)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned char vec = 0;

	assert_int_equal(mincore((void *)((uintptr_t)addr & ~(uintptr_t)(page - 1)), 1, &vec), 0);
	return vec & 1;
}

/* Whether this kernel (or emulator) prefaults with MADV_POPULATE_WRITE. */
static bool populate_works(void)
{
	long page = sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bool ok;

	assert_true(p != MAP_FAILED);
	ok = madvise(p, page, MADV_POPULATE_WRITE) == 0 && page_resident(p);
	munmap(p, page);
	return ok;
}

/* Units of 4096 bytes taken one at a time, the way a large class grows. */
static void take_units_one_by_one(struct kmem_cache *s, struct llist_node **unit, int n)
{
	for (int i = 0; i < n; i++) {
		struct llist_node *last;

		assert_int_equal(kmem_cache_alloc_bulk(s, 1, &unit[i], &last), 1);
	}
}

/*
 * Past its first 16 units, a chunk of a large class prefaults the pages of
 * the next ones in one call, where each would take a page fault.  Where the
 * call is refused (a kernel before 5.14, an emulator), the pages fault in
 * when touched, as before.
 */
static void test_a_growing_large_class_prefaults_the_pages_of_its_next_units(void **state)
{
	struct kmem_cache *s = kmem_cache_create(4096, 0);
	struct llist_node *unit[17];
	char *next;

	assert_non_null(s);
	take_units_one_by_one(s, unit, 17);
	/* unit 16 was the 17th: units 17 .. 16 + 32 come next */
	next = (char *)unit[16] + 20 * 4096;
	assert_int_equal(page_resident(next), populate_works());
	*next = 1;
	assert_true(page_resident(next));
	for (int i = 0; i < 17; i++)
		kmem_cache_free(s, unit[i]);
	kmem_cache_destroy(s);
}

/* A cache that took a few units keeps only the pages it touched. */
static void test_a_cache_that_took_a_few_units_prefaults_nothing(void **state)
{
	struct kmem_cache *s = kmem_cache_create(4096, 0);
	struct llist_node *unit[4];

	assert_non_null(s);
	take_units_one_by_one(s, unit, 4);
	assert_true(page_resident(unit[3]));
	assert_false(page_resident((char *)unit[3] + 2 * 4096));
	for (int i = 0; i < 4; i++)
		kmem_cache_free(s, unit[i]);
	kmem_cache_destroy(s);
}

struct ranges {
	int n;
	uintptr_t start[64], end[64];
};

static void collect_range(void *start, size_t len, void *arg)
{
	struct ranges *r = arg;

	if (r->n < 64) {
		r->start[r->n] = (uintptr_t)start;
		r->end[r->n] = (uintptr_t)start + len;
	}
	r->n++;
}

static bool in_ranges(const struct ranges *r, const void *p, size_t len)
{
	for (int i = 0; i < r->n && i < 64; i++)
		if ((uintptr_t)p >= r->start[i] && (uintptr_t)p + len <= r->end[i])
			return true;
	return false;
}

static void test_for_each_chunk_reports_ranges_holding_every_object(void **state)
{
	static struct bpf_mem_alloc ma, other;
	static void *p[NUM_CACHES];
	struct ranges r = { 0 }, ro = { 0 };
	int n;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&other, 64, false), 0);
	for (int i = 0; i < NUM_CACHES; i++)
		p[i] = alloc_wait(&ma, bpf_mem_sizes[i] - T_HDR);
	n = bpfmem_for_each_chunk(&ma, collect_range, &r);
	/* one chunk per size class: the prefill and this test fit in one each */
	assert_int_equal(n, NUM_CACHES);
	assert_int_equal(r.n, NUM_CACHES);
	for (int i = 0; i < NUM_CACHES; i++)
		assert_true(in_ranges(&r, p[i], bpf_mem_sizes[i] - T_HDR));
	assert_int_equal(bpfmem_for_each_chunk(&other, collect_range, &ro), 1);
	for (int i = 0; i < NUM_CACHES; i++)
		assert_false(in_ranges(&ro, p[i], 1));
	for (int i = 0; i < NUM_CACHES; i++)
		bpf_mem_free(&ma, p[i]);
	bpf_mem_alloc_destroy(&ma);
	bpf_mem_alloc_destroy(&other);
}

static void test_for_each_chunk_rejects_per_cpu_and_zeroed_allocators(void **state)
{
	static struct bpf_mem_alloc pcpu, zeroed;
	struct ranges r = { 0 };

	assert_int_equal(bpf_mem_alloc_init(&pcpu, 32, true), 0);
	assert_int_equal(bpfmem_for_each_chunk(&pcpu, collect_range, &r), -EINVAL);
	assert_int_equal(bpfmem_for_each_chunk(&zeroed, collect_range, &r), -EINVAL);
	assert_int_equal(bpfmem_for_each_chunk(NULL, collect_range, &r), -EINVAL);
	bpf_mem_alloc_destroy(&pcpu);
	assert_int_equal(bpfmem_for_each_chunk(&pcpu, collect_range, &r), -EINVAL);
	assert_int_equal(r.n, 0);
}

/* ---- concurrency: frees, trims and unmaps while others ask ---- */

#define WORKERS		2
#define SLOTS		512
#define ROUNDS		400

static struct bpf_mem_alloc conc_any, conc_big, conc_other;
/* objects the workers hold now, published for the querier: a slot may be
 * freed (and its chunk unmapped) at any moment after it is read */
static _Atomic(char *) published[WORKERS][SLOTS];
static _Atomic bool conc_stop, conc_querying;
static _Atomic long conc_wrong, conc_queries;

#define BIG 40000	/* a chunk per unit: every trim that reaches the backend unmaps */

static void *conc_worker(void *arg)
{
	int w = (int)(intptr_t)arg;
	unsigned long rnd = 0x9e3779b97f4a7c15ull * (w + 1);
	static __thread char *mine[SLOTS];
	static __thread size_t size[SLOTS];

	if (bpfmem_thread_attach(1 + w, 0))
		atomic_fetch_add(&conc_wrong, 1000000);
	while (!atomic_load(&conc_querying))
		sched_yield();
	/* until the querier (which may not get a CPU for a while) asked enough */
	for (int round = 0; round < ROUNDS || atomic_load(&conc_queries) < 10000; round++) {
		for (int s = 0; s < SLOTS; s++) {
			rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
			if (mine[s]) {
				bool big = size[s] == BIG;
				struct bpf_mem_alloc *ma = big ? &conc_big : &conc_any;

				/* a live object of our own: always owned, whole */
				if (!bpfmem_owns(ma, mine[s], size[s]) ||
				    bpfmem_owns(&conc_other, mine[s], 1) ||
				    bpfmem_owns(big ? &conc_any : &conc_big, mine[s], 1))
					atomic_fetch_add(&conc_wrong, 1);
				atomic_store(&published[w][s], NULL);
				if (rnd & 1)
					big ? bpf_mem_cache_free(ma, mine[s]) : bpf_mem_free(ma, mine[s]);
				else
					big ? bpf_mem_cache_free_rcu(ma, mine[s])
					    : bpf_mem_free_rcu(ma, mine[s]);
				mine[s] = NULL;
				continue;
			}
			size[s] = rnd % 16 == 0 ? BIG : 1 + (rnd >> 8) % 4088;
			mine[s] = size[s] == BIG ? bpf_mem_cache_alloc(&conc_big)
						 : bpf_mem_alloc(&conc_any, size[s]);
			atomic_store(&published[w][s], mine[s]);
		}
	}
	for (int s = 0; s < SLOTS; s++) {
		atomic_store(&published[w][s], NULL);
		if (mine[s])
			size[s] == BIG ? bpf_mem_cache_free(&conc_big, mine[s])
				       : bpf_mem_free(&conc_any, mine[s]);
		mine[s] = NULL;
	}
	bpfmem_thread_detach();
	return NULL;
}

/* Asks about objects that may be freed, recycled or unmapped under it: the
 * answer may go either way, but it must never fault, and an address just
 * past any unit is never owned. */
static void *conc_querier(void *arg)
{
	(void)arg;
	atomic_store(&conc_querying, true);
	while (!atomic_load(&conc_stop)) {
		for (int w = 0; w < WORKERS; w++)
			for (int s = 0; s < SLOTS; s++) {
				char *p = atomic_load(&published[w][s]);

				if (!p)
					continue;
				(void)bpfmem_owns(&conc_any, p, 8);
				(void)bpfmem_owns(&conc_big, p, BIG);
				if (bpfmem_owns(&conc_other, p, 1) ||
				    bpfmem_owns(&conc_big, p, BIG + 1))
					atomic_fetch_add(&conc_wrong, 1);
				atomic_fetch_add(&conc_queries, 1);
			}
		sched_yield();
	}
	return NULL;
}

static void test_owns_answers_while_other_threads_free_trim_and_unmap(void **state)
{
	pthread_t workers[WORKERS], querier;
	struct slab_stats before = t_slab();

	assert_int_equal(bpf_mem_alloc_init(&conc_any, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&conc_big, BIG, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&conc_other, 64, false), 0);
	atomic_store(&conc_stop, false);
	atomic_store(&conc_querying, false);
	atomic_store(&conc_queries, 0);
	assert_int_equal(pthread_create(&querier, NULL, conc_querier, NULL), 0);
	for (int w = 0; w < WORKERS; w++)
		assert_int_equal(pthread_create(&workers[w], NULL, conc_worker, (void *)(intptr_t)w),
				 0);
	for (int w = 0; w < WORKERS; w++)
		assert_int_equal(pthread_join(workers[w], NULL), 0);
	atomic_store(&conc_stop, true);
	assert_int_equal(pthread_join(querier, NULL), 0);
	assert_true(atomic_load(&conc_queries) >= 10000);
	assert_int_equal(atomic_load(&conc_wrong), 0);
	bpfmem_rcu_barrier();
	bpf_mem_alloc_destroy(&conc_any);
	bpf_mem_alloc_destroy(&conc_big);
	bpf_mem_alloc_destroy(&conc_other);
	assert_int_equal(t_slab().chunks, before.chunks);
	assert_int_equal(t_slab().allocs - before.allocs, t_slab().frees - before.frees);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_owns_whole_object_of_fixed_size_cache),
		cmocka_unit_test(test_owns_the_whole_size_class_of_every_any_size_object),
		cmocka_unit_test(test_owns_range_crossing_the_end_of_a_unit_is_false),
		cmocka_unit_test(test_owns_header_in_front_of_the_object_is_not_the_callers),
		cmocka_unit_test(test_owns_len_zero_asks_about_the_byte_at_addr),
		cmocka_unit_test(test_owns_length_that_wraps_the_address_space_is_false),
		cmocka_unit_test(test_owns_null_and_wild_addresses_are_false),
		cmocka_unit_test(test_owns_unmapped_address_is_false),
		cmocka_unit_test(test_owns_null_or_zeroed_allocator_is_false),
		cmocka_unit_test(test_owns_objects_of_another_allocator_of_the_same_size_are_false),
		cmocka_unit_test(test_owns_objects_of_other_kinds_of_allocators_are_false),
		cmocka_unit_test(test_owns_freed_objects_cached_or_waiting_for_a_grace_period),
		cmocka_unit_test(test_owns_is_false_after_destroy),
		cmocka_unit_test(test_owns_large_units_of_fixed_size_caches),
		cmocka_unit_test(test_chunks_go_back_to_the_system_when_all_their_units_have),
		cmocka_unit_test(test_single_unit_chunks_are_unmapped_at_their_free),
		cmocka_unit_test(test_a_growing_large_class_prefaults_the_pages_of_its_next_units),
		cmocka_unit_test(test_a_cache_that_took_a_few_units_prefaults_nothing),
		cmocka_unit_test(test_for_each_chunk_reports_ranges_holding_every_object),
		cmocka_unit_test(test_for_each_chunk_rejects_per_cpu_and_zeroed_allocators),
		cmocka_unit_test(test_owns_answers_while_other_threads_free_trim_and_unmap),
	};

	return t_run(tests);
}
