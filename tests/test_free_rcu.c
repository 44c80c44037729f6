/* SPDX-License-Identifier: MIT */
/*
 * RCU-deferred frees and type stability: an object freed with *_free_rcu is
 * not handed out again, nor returned to the backend, while a reader that
 * started before the free is inside its read-side section, and is ready for
 * reuse by its cache once the grace period has ended; trimmed objects stay
 * valid memory while readers of either domain are inside.
 */
#include "helpers.h"

#include <stdlib.h>

#define NR_ALLOCS 300

static void *cache_alloc_flushed(struct bpf_mem_alloc *ma)
{
	void *p = bpf_mem_cache_alloc(ma);

	assert_non_null(p);
	irq_work_flush();
	return p;
}

static void *any_alloc_flushed(struct bpf_mem_alloc *ma, size_t size)
{
	void *p = bpf_mem_alloc(ma, size);

	assert_non_null(p);
	irq_work_flush();
	return p;
}

/* Reads every byte: under ASan this faults if the memory went back to malloc. */
static unsigned int touch(const void *p, size_t size)
{
	const volatile unsigned char *b = p;
	unsigned int sum = 0;

	for (size_t i = 0; i < size; i++)
		sum += b[i];
	return sum;
}

static void test_cache_free_rcu_not_reused_while_rcu_reader_inside(void **state)
{
	static struct bpf_mem_alloc ma;
	void **held = calloc(NR_ALLOCS, sizeof(void *));
	unsigned long frees0;
	struct t_reader *r;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	p = cache_alloc_flushed(&ma);
	frees0 = t_stats(&ma, 0).backend_frees;
	r = t_reader_enter(false);
	bpf_mem_cache_free_rcu(&ma, p);
	for (int i = 0; i < NR_ALLOCS; i++) {
		held[i] = cache_alloc_flushed(&ma);
		assert_ptr_not_equal(held[i], p);
	}
	assert_int_equal(t_stats(&ma, 0).backend_frees, frees0);
	touch(p, 64);
	/* after the grace period it waits, ready for reuse, in its cache */
	t_reader_leave(r);
	bpfmem_rcu_barrier();
	assert_true(t_ready_holds(t_cache(&ma, 0, 0), p));
	assert_int_equal(t_stats(&ma, 0).backend_frees, frees0);
	for (int i = 0; i < NR_ALLOCS; i++)
		bpf_mem_cache_free(&ma, held[i]);
	bpf_mem_alloc_destroy(&ma);
	free(held);
}

static void test_free_rcu_not_reused_while_rcu_reader_inside(void **state)
{
	static struct bpf_mem_alloc ma;
	void **held = calloc(NR_ALLOCS, sizeof(void *));
	int idx = t_class_idx(128);
	unsigned long frees0;
	struct t_reader *r;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	p = any_alloc_flushed(&ma, 100);
	frees0 = t_stats(&ma, idx).backend_frees;
	r = t_reader_enter(false);
	bpf_mem_free_rcu(&ma, p);
	for (int i = 0; i < NR_ALLOCS; i++) {
		held[i] = any_alloc_flushed(&ma, 100);
		assert_ptr_not_equal(held[i], p);
	}
	assert_int_equal(t_stats(&ma, idx).backend_frees, frees0);
	touch(p, 100);
	t_reader_leave(r);
	bpfmem_rcu_barrier();
	assert_true(t_ready_holds(t_cache(&ma, idx, 0), p));
	assert_int_equal(t_stats(&ma, idx).backend_frees, frees0);
	for (int i = 0; i < NR_ALLOCS; i++)
		bpf_mem_free(&ma, held[i]);
	bpf_mem_alloc_destroy(&ma);
	free(held);
}

/*
 * A tasks-trace reader keeps the memory valid; whether the object may be
 * reused depends on whether the trace grace period implies an RCU one.
 */
static void test_free_rcu_memory_stays_valid_while_trace_reader_inside(void **state)
{
	static struct bpf_mem_alloc ma;
	void **held = calloc(NR_ALLOCS, sizeof(void *));
	unsigned long frees0;
	struct t_reader *r;
	bool reused = false;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	p = cache_alloc_flushed(&ma);
	frees0 = t_stats(&ma, 0).backend_frees;
	r = t_reader_enter(true);
	bpf_mem_cache_free_rcu(&ma, p);
	for (int i = 0; i < NR_ALLOCS; i++) {
		held[i] = cache_alloc_flushed(&ma);
		if (held[i] == p)
			reused = true;
	}
	if (rcu_trace_implies_rcu_gp())
		assert_false(reused);
	assert_int_equal(t_stats(&ma, 0).backend_frees, frees0);
	touch(p, 64);
	t_reader_leave(r);
	bpfmem_rcu_barrier();
	assert_true(reused || t_ready_holds(t_cache(&ma, 0, 0), p));
	assert_int_equal(t_stats(&ma, 0).backend_frees, frees0);
	for (int i = 0; i < NR_ALLOCS; i++)
		bpf_mem_cache_free(&ma, held[i]);
	bpf_mem_alloc_destroy(&ma);
	free(held);
}

static void test_free_rcu_is_ready_for_reuse_after_barrier(void **state)
{
	static struct bpf_mem_alloc ma;
	struct slab_stats s0, s1;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	p = cache_alloc_flushed(&ma);
	s0 = t_slab();
	bpf_mem_cache_free_rcu(&ma, p);
	bpfmem_rcu_barrier();
	s1 = t_slab();
	assert_true(t_ready_holds(t_cache(&ma, 0, 0), p));
	assert_int_equal(s1.frees - s0.frees, 0);
	bpf_mem_alloc_destroy(&ma);
}

/* With every reuse slot taken (none free, no ready chain to join), the
 * objects go through the tasks-trace grace period to the backend instead. */
static void test_free_rcu_returns_to_backend_when_no_slot_is_free(void **state)
{
	static struct bpf_mem_alloc ma;
	struct llist_node *ready[REUSE_SLOTS];
	struct slab_stats s0, s1;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	p = cache_alloc_flushed(&ma);
	t_slots_take(t_cache(&ma, 0, 0), ready);
	s0 = t_slab();
	bpf_mem_cache_free_rcu(&ma, p);
	bpfmem_rcu_barrier();
	s1 = t_slab();
	t_slots_give_back(t_cache(&ma, 0, 0), ready);
	assert_int_equal(s1.frees - s0.frees, 1);
	bpf_mem_alloc_destroy(&ma);
}

/*
 * Only one RCU callback per cache is in flight; frees made meanwhile batch
 * up behind it.  A barrier after them still has to return every one.
 */
static void test_rcu_barrier_returns_frees_batched_behind_a_callback(void **state)
{
	static struct bpf_mem_alloc ma;
	unsigned long frees0;
	struct t_reader *r;
	void *p[10];

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	for (int i = 0; i < 10; i++)
		p[i] = cache_alloc_flushed(&ma);
	frees0 = t_stats(&ma, 0).backend_frees;
	r = t_reader_enter(false);
	bpf_mem_cache_free_rcu(&ma, p[0]);
	irq_work_flush();	/* p[0]'s callback is queued and cannot run yet */
	assert_int_equal(atomic_load(&t_cache(&ma, 0, 0)->call_rcu_in_progress), 1);
	for (int i = 1; i < 10; i++)
		bpf_mem_cache_free_rcu(&ma, p[i]);
	t_reader_leave(r);
	bpfmem_rcu_barrier();
	for (int i = 0; i < 10; i++)
		assert_true(t_ready_holds(t_cache(&ma, 0, 0), p[i]));
	assert_int_equal(t_stats(&ma, 0).backend_frees, frees0);
	bpf_mem_alloc_destroy(&ma);
}

/* `n` objects of a new fixed-size allocator of `size` in p[], and p[0]'s
 * callback in flight on CPU 0's cache, held there by an RCU reader. */
static struct t_reader *callback_in_flight_of(struct bpf_mem_alloc *ma, size_t size, void **p,
					      int n)
{
	struct t_reader *r;

	assert_int_equal(bpf_mem_alloc_init(ma, size, false), 0);
	for (int i = 0; i < n; i++)
		p[i] = cache_alloc_flushed(ma);
	r = t_reader_enter(false);
	bpf_mem_cache_free_rcu(ma, p[0]);
	irq_work_flush();
	assert_int_equal(atomic_load(&t_cache(ma, 0, 0)->call_rcu_in_progress), 1);
	return r;
}

static struct t_reader *callback_in_flight(struct bpf_mem_alloc *ma, void **p, int n)
{
	return callback_in_flight_of(ma, 64, p, n);
}

/* The owner's chain on its way to the RCU stage (rcu_out), walked and
 * checked against the count it carries. */
static int rcu_out_count(struct bpf_mem_cache *c)
{
	struct llist_node *first = atomic_load(&c->rcu_out);
	int n = (int)llist_count(first);

	if (first) {
		assert_int_equal(n, c->rcu_out_cnt);
		assert_ptr_equal(llist_last(first), c->rcu_out_tail);
	}
	return n;
}

/*
 * Behind a callback in flight the owner collects its *_free_rcu objects
 * privately and hands them on a whole batch at a time, tail and count
 * included: no atomic read-modify-write, and nobody walks it.
 */
static void test_owner_free_rcu_hands_on_whole_batches_behind_a_callback(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpf_mem_cache *c;
	struct t_reader *r;
	void *p[49];

	r = callback_in_flight(&ma, p, 49);
	c = t_cache(&ma, 0, 0);
	assert_int_equal(c->batch, 48);		/* p[0] in flight, p[1..48] one batch */
	for (int i = 1; i < c->batch; i++)
		bpf_mem_cache_free_rcu(&ma, p[i]);
	assert_true(llist_empty(&c->free_by_rcu));
	assert_int_equal(c->rcu_local_cnt, c->batch - 1);
	bpf_mem_cache_free_rcu(&ma, p[c->batch]);
	assert_int_equal(c->rcu_local_cnt, 0);
	assert_int_equal(rcu_out_count(c), c->batch);
	assert_true(llist_empty(&c->free_by_rcu));
	t_reader_leave(r);
	bpfmem_rcu_barrier();
	for (int i = 0; i <= c->batch; i++)
		assert_true(t_ready_holds(c, p[i]));
	bpf_mem_alloc_destroy(&ma);
}

/*
 * While the RCU stage has not taken the owner's last chain yet, the owner's
 * next batch joins it (taken back with a CAS, tail and count included), so
 * nothing waits privately longer than a batch; the stage after the one in
 * flight takes both in one grace period and hands them back as one ready
 * chain, count included.
 */
static void test_owner_batches_join_the_chain_the_stage_has_not_taken(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpf_mem_cache *c;
	struct t_reader *r;
	void *p[97];
	int whole = 0;

	r = callback_in_flight(&ma, p, 97);
	c = t_cache(&ma, 0, 0);
	for (int i = 1; i <= c->batch; i++)
		bpf_mem_cache_free_rcu(&ma, p[i]);
	assert_int_equal(rcu_out_count(c), c->batch);
	for (int i = c->batch + 1; i < 97; i++)
		bpf_mem_cache_free_rcu(&ma, p[i]);
	assert_int_equal(rcu_out_count(c), 2 * c->batch);
	assert_int_equal(c->rcu_local_cnt, 0);
	assert_true(llist_empty(&c->free_by_rcu));
	t_reader_leave(r);
	bpfmem_rcu_barrier();
	for (int i = 0; i < 97; i++)
		assert_true(t_ready_holds(c, p[i]));
	for (int i = 0; i < REUSE_SLOTS; i++) {
		struct llist_node *chain = atomic_load(&c->reuse_chain[i]);

		if (chain && chain != REUSE_BUSY && (int)llist_count(chain) == 2 * c->batch) {
			assert_int_equal(atomic_load(&c->reuse_cnt[i]), 2 * c->batch);
			whole++;
		}
	}
	assert_int_equal(whole, 1);
	bpf_mem_alloc_destroy(&ma);
}

/* Every slot of c holds a chain of `per_slot` of the objects in q[]
 * (allocated by c's owner), with its count. */
static void slots_fill(struct bpf_mem_cache *c, void **q, int per_slot)
{
	for (int i = 0; i < REUSE_SLOTS; i++) {
		struct llist_node *first = NULL;

		for (int k = 0; k < per_slot; k++) {
			struct llist_node *n = (struct llist_node *)((char *)q[i * per_slot + k] - T_HDR);

			n->next = first;
			first = n;
		}
		assert_null(atomic_load(&c->reuse_chain[i]));
		atomic_store(&c->reuse_cnt[i], per_slot);
		atomic_store(&c->reuse_chain[i], first);
	}
}

/* Objects in c's slots, each chain walked and checked against its count
 * and the bound on what one slot may hold. */
static int slots_count(struct bpf_mem_cache *c)
{
	int total = 0;

	for (int i = 0; i < REUSE_SLOTS; i++) {
		struct llist_node *chain = atomic_load(&c->reuse_chain[i]);
		int n = (int)llist_count(chain);

		assert_true(chain != REUSE_BUSY);
		assert_int_equal(n, atomic_load(&c->reuse_cnt[i]));
		assert_true(n <= RCU_PENDING_MAX(c));
		total += n;
	}
	return total;
}

#define BIG 4088	/* the 4096 class: RCU_PENDING_MAX is small */
#define BIG_FREED 10

/*
 * Every slot taken (refill batches, trims): the objects of a grace period
 * go in front of a ready chain rather than to the backend, as long as that
 * chain stays within RCU_PENDING_MAX; past it they take the tasks-trace
 * path.  They come back in two stages, of 1 and 9 objects.  Slots that
 * have `room` objects left before the bound: 10 leaves room for both
 * stages, 4 only for the first.
 */
static void gp_chain_joins_a_ready_one(int room, int expect_in_slots)
{
	static struct bpf_mem_alloc ma;
	static void *q[REUSE_SLOTS * 1024];
	int per_slot;
	struct bpf_mem_cache *c;
	struct t_reader *r;
	void *p[BIG_FREED];
	int in_slots = 0;

	r = callback_in_flight_of(&ma, BIG, p, BIG_FREED);
	c = t_cache(&ma, 0, 0);
	per_slot = RCU_PENDING_MAX(c) - room;
	assert_true(per_slot > 0 && per_slot <= 1024);
	t_refill_stall();
	for (int i = 0; i < REUSE_SLOTS * per_slot; i++) {
		q[i] = bpf_mem_cache_alloc(&ma);
		assert_non_null(q[i]);
	}
	t_owner_takes_ready_chains(c);	/* what the allocations' refills left */
	slots_fill(c, q, per_slot);
	t_refill_resume();
	for (int i = 1; i < BIG_FREED; i++)
		bpf_mem_cache_free_rcu(&ma, p[i]);
	assert_int_equal(rcu_out_count(c), BIG_FREED - 1);	/* one stage */
	t_reader_leave(r);
	bpfmem_rcu_barrier();
	assert_int_equal(slots_count(c), REUSE_SLOTS * per_slot + expect_in_slots);
	for (int i = 0; i < BIG_FREED; i++)
		in_slots += t_ready_holds(c, p[i]);
	assert_int_equal(in_slots, expect_in_slots);
	bpf_mem_alloc_destroy(&ma);
}

static void test_a_grace_periods_objects_join_a_ready_chain_when_every_slot_is_taken(void **state)
{
	gp_chain_joins_a_ready_one(BIG_FREED, BIG_FREED);
}

static void test_a_ready_chain_never_grows_past_its_bound(void **state)
{
	gp_chain_joins_a_ready_one(4, 1);
}

/*
 * An owned CPU's objects come back to it even when the last one it freed
 * was borrowed from the shared CPU (whose address the origin hint then
 * holds): the shared copy serves threads without a CPU, and would keep
 * them from the owner.
 */
static void test_an_owned_cpus_free_rcu_objects_come_back_to_it_not_to_the_shared_cpu(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpf_mem_cache *c, *shared;
	struct t_reader *r;
	void *p[3];

	r = callback_in_flight(&ma, p, 3);
	c = t_cache(&ma, 0, 0);
	shared = t_cache(&ma, 0, SHARED_CPU);
	assert_ptr_equal(c->shared, shared);
	*(struct bpf_mem_cache **)((char *)p[2] - T_HDR) = shared;	/* borrowed */
	bpf_mem_cache_free_rcu(&ma, p[1]);
	bpf_mem_cache_free_rcu(&ma, p[2]);
	assert_ptr_equal(atomic_load(&c->tgt), shared);
	t_reader_leave(r);
	bpfmem_rcu_barrier();
	for (int i = 0; i < 3; i++) {
		assert_true(t_ready_holds(c, p[i]));
		assert_false(t_ready_holds(shared, p[i]));
	}
	bpf_mem_alloc_destroy(&ma);
}

/*
 * What a grace period gives back can be thousands of objects in one ready
 * chain.  The owner takes it in pieces of what a trim keeps, the rest
 * parked with its count, so that its list stays within the watermarks
 * (a list far above the high one would trim on the next free).
 */
static void test_a_long_ready_chain_is_taken_in_pieces(void **state)
{
	static struct bpf_mem_alloc ma;
	static void *q[300], *got[400];
	struct llist_node *ready[REUSE_SLOTS], *chain = NULL;
	struct bpf_mem_cache *c;
	unsigned long backend;
	int keep, n;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	c = t_cache(&ma, 0, bpfmem_current_cpu());
	keep = (c->low_watermark + c->high_watermark) / 2;
	t_refill_stall();
	for (int i = 0; i < 300; i++) {
		q[i] = bpf_mem_cache_alloc(&ma);
		assert_non_null(q[i]);
	}
	t_owner_takes_ready_chains(c);
	for (struct llist_node *n; (n = c->free_llist.first);) {	/* the list, emptied */
		c->free_llist.first = n->next;
		n->next = chain;
		chain = n;
	}
	for (int i = 0; i < 300; i++) {
		struct llist_node *n = (struct llist_node *)((char *)q[i] - T_HDR);

		n->next = chain;
		chain = n;
	}
	atomic_store(&c->free_cnt, 0);
	t_slots_take(c, ready);
	atomic_store(&c->reuse_cnt[0], (int)llist_count(chain));
	atomic_store(&c->reuse_chain[0], chain);
	backend = atomic_load(&c->backend_allocs);
	n = (int)llist_count(chain);
	assert_true(n > c->high_watermark && n <= 400);
	for (int i = 0; i < n; i++) {
		got[i] = bpf_mem_cache_alloc(&ma);
		assert_non_null(got[i]);
		/* a piece, or what is left once trims could have parked it */
		assert_true(t_free_cnt(c) < max(c->high_watermark, TRIM_PARK_OBJS));
		if (i == 0)
			assert_int_equal(t_free_cnt(c), keep - 1);	/* the first piece */
		assert_int_equal((int)llist_count(c->parked), atomic_load(&c->parked_cnt));
		assert_int_equal(t_free_cnt(c) + atomic_load(&c->parked_cnt), n - 1 - i);
	}
	assert_int_equal(atomic_load(&c->backend_allocs), backend);
	t_slots_give_back(c, ready);
	t_refill_resume();
	while (n)
		bpf_mem_cache_free(&ma, got[--n]);
	bpf_mem_alloc_destroy(&ma);
}

/* The owner's next slow path hands on a partial batch. */
static void test_owner_slow_path_hands_on_pending_free_rcu(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpf_mem_cache *c;
	struct t_reader *r;
	void *p[4], *q;

	r = callback_in_flight(&ma, p, 4);
	c = t_cache(&ma, 0, 0);
	for (int i = 1; i < 4; i++)
		bpf_mem_cache_free_rcu(&ma, p[i]);
	assert_int_equal(c->rcu_local_cnt, 3);
	c->alloc_floor = t_free_cnt(c);		/* the next allocation leaves the fast path */
	q = bpf_mem_cache_alloc(&ma);
	assert_non_null(q);
	assert_int_equal(c->rcu_local_cnt, 0);
	assert_int_equal(rcu_out_count(c), 3);
	t_reader_leave(r);
	bpf_mem_cache_free(&ma, q);
	bpf_mem_alloc_destroy(&ma);
}

/* A *_free_rcu that interrupted the owner inside its cache leaves the
 * owner's private batch alone: the object goes to the atomic list. */
static void test_free_rcu_reentering_the_owner_goes_to_the_atomic_list(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpf_mem_cache *c;
	struct t_reader *r;
	void *p[2];

	r = callback_in_flight(&ma, p, 2);
	c = t_cache(&ma, 0, 0);
	c->active.counter = 1;
	bpf_mem_cache_free_rcu(&ma, p[1]);
	c->active.counter = 0;
	assert_int_equal(c->rcu_local_cnt, 0);
	assert_ptr_equal((char *)c->free_by_rcu.first + T_HDR, p[1]);
	t_reader_leave(r);
	bpfmem_rcu_barrier();
	bpf_mem_alloc_destroy(&ma);
}

/*
 * Frees batched behind a callback already in flight wait for a grace period
 * of their own.  Reader A holds the grace period of p0's callback, reader B
 * enters after that grace period began, p1 is freed behind the callback
 * and handed on to the RCU stage (rcu_out, where the callback finds it),
 * then A leaves: p0's grace period can end, p1's cannot while B is inside,
 * so no allocation may return p1.  The precondition, p0's grace period
 * ending while B is inside, shows as p0 coming back (after their RCU grace
 * period the objects are recyclable); a round where B entered before that
 * grace period began never sees it and is retried.
 */
#define BEHIND_ROUNDS	10
#define BEHIND_MAX	20000	/* objects held per round */

static void test_free_rcu_batched_behind_callback_in_flight_waits_for_own_gp(void **state)
{
	static struct bpf_mem_alloc ma;
	static void *held[BEHIND_MAX];
	struct timespec settle = { .tv_nsec = 20 * 1000000L };
	int got_there = 0, rounds = 0, p1_reused = 0;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	for (; rounds < BEHIND_ROUNDS && !got_there; rounds++) {
		void *p0 = cache_alloc_flushed(&ma), *p1 = cache_alloc_flushed(&ma), *q;
		struct bpf_mem_cache *c = t_cache(&ma, 0, 0);
		struct t_reader *a, *b;
		int n = 0, seen_p0_at = -1;
		double deadline;
		struct timespec now;

		a = t_reader_enter(false);
		bpf_mem_cache_free_rcu(&ma, p0);
		irq_work_flush();	/* p0's callback is queued; A holds its grace period */
		assert_int_equal(atomic_load(&c->call_rcu_in_progress), 1);
		nanosleep(&settle, NULL);	/* and the grace period has begun */
		b = t_reader_enter(false);
		bpf_mem_cache_free_rcu(&ma, p1);	/* batched behind the callback */
		/* the owner's slow path hands p1 on to the RCU stage while p0's
		 * callback is still held by A: p1 is on rcu_out when it runs */
		c->alloc_floor = t_free_cnt(c);
		q = bpf_mem_cache_alloc(&ma);
		assert_non_null(q);
		assert_int_equal(rcu_out_count(c), 1);
		assert_int_equal(atomic_load(&c->call_rcu_in_progress), 1);
		bpf_mem_cache_free(&ma, q);
		irq_work_flush();
		t_reader_leave(a);

		clock_gettime(CLOCK_MONOTONIC, &now);
		deadline = (double)now.tv_sec + now.tv_nsec / 1e9 + 2.0;
		/* allocate until p0 is back, then a few refill batches more */
		while (n < BEHIND_MAX && (seen_p0_at < 0 || n < seen_p0_at + 400)) {
			void *p = cache_alloc_flushed(&ma);

			held[n++] = p;
			if (p == p0 && seen_p0_at < 0)
				seen_p0_at = n;
			if (p == p1)
				p1_reused++;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (seen_p0_at < 0 && (double)now.tv_sec + now.tv_nsec / 1e9 > deadline)
				break;
			if (seen_p0_at < 0 && n % 64 == 0)
				nanosleep(&(struct timespec){ .tv_nsec = 1000000L }, NULL);
		}
		got_there = seen_p0_at >= 0;
		t_reader_leave(b);
		while (n)
			bpf_mem_cache_free(&ma, held[--n]);
		bpfmem_rcu_barrier();
		assert_int_equal(p1_reused, 0);
	}
	print_message("p0's grace period ended with reader B inside in round %d of %d\n",
		      rounds, BEHIND_ROUNDS);
	if (!got_there)
		fail_msg("in %d rounds p0 never came back while reader B was inside: the case "
			 "this test is about did not happen", BEHIND_ROUNDS);
	bpf_mem_alloc_destroy(&ma);
}

/*
 * Fixed-size 100 (low 32, high 96): holds 120 objects, each filled with its
 * index, then frees until one free trims 33 objects, with every reuse slot
 * taken so that they go through the grace periods.  Returns how many are
 * still held; held[n..119] were freed.
 */
static int fill_then_trim(struct bpf_mem_alloc *ma, unsigned char **held)
{
	struct bpf_mem_cache *c = t_cache(ma, 0, 0);
	int n = 120, cnt;

	for (int i = 0; i < n; i++) {
		held[i] = cache_alloc_flushed(ma);
		memset(held[i], i, 100);
	}
	/* not for immediate reuse: through the grace periods to the backend
	 * (the shared CPU's copy too, which CPU 0 may have borrowed from) */
	t_slots_block(c);
	t_slots_block(t_cache(ma, 0, bpfmem_nr_cpus()));
	for (cnt = t_free_cnt(c); cnt <= 96; cnt++)
		bpf_mem_cache_free(ma, held[--n]);
	assert_int_equal(t_free_cnt(c), 64);
	irq_work_flush();
	return n;
}

static void trimmed_stay_valid_while_reader_inside(struct bpf_mem_alloc *ma, bool trace)
{
	unsigned char *held[120];
	unsigned long frees0;
	struct t_reader *r;
	int n;

	assert_int_equal(bpf_mem_alloc_init(ma, 100, false), 0);
	frees0 = t_stats(ma, 0).backend_frees;
	r = t_reader_enter(trace);
	n = fill_then_trim(ma, held);
	/* no object went back to malloc: ASan would catch reading it */
	for (int i = n; i < 120; i++)
		touch(held[i], 100);
	assert_int_equal(t_stats(ma, 0).backend_frees, frees0);
	t_reader_leave(r);
	bpfmem_rcu_barrier();
	t_slots_release(t_cache(ma, 0, 0));
	t_slots_release(t_cache(ma, 0, bpfmem_nr_cpus()));
	assert_int_equal(t_stats(ma, 0).backend_frees, frees0 + 33);
	while (n)
		bpf_mem_cache_free(ma, held[--n]);
	bpf_mem_alloc_destroy(ma);
}

static void test_trimmed_objects_stay_valid_while_rcu_reader_inside(void **state)
{
	static struct bpf_mem_alloc ma;
	size_t park = t_park_trims(0);	/* trims past the slots: straight to the GPs */

	trimmed_stay_valid_while_reader_inside(&ma, false);
	t_park_trims(park);
}

static void test_trimmed_objects_stay_valid_while_trace_reader_inside(void **state)
{
	static struct bpf_mem_alloc ma;
	size_t park = t_park_trims(0);	/* trims past the slots: straight to the GPs */

	trimmed_stay_valid_while_reader_inside(&ma, true);
	t_park_trims(park);
}

/*
 * The same for the tasks-trace stage, with trims: trace reader A holds the
 * grace period of a first trimmed batch, trace reader B enters after it
 * began, a second batch is trimmed behind it, A leaves.  The first batch
 * may go back to the backend (the precondition, shown by backend_frees),
 * the second may not while B is inside.  The reuse slots are blocked, so
 * the trims take the grace-period path, and no allocation runs meanwhile,
 * so the refill recycles neither batch.
 */
static void test_trimmed_behind_trace_gp_in_flight_wait_for_own_gp(void **state)
{
	static struct bpf_mem_alloc ma;
	static unsigned char *held[160];
	struct timespec settle = { .tv_nsec = 20 * 1000000L };
	struct bpf_mem_cache *c;
	int got_there = 0, rounds = 0;
	long early = 0;
	size_t park = t_park_trims(0);	/* trims past the slots: straight to the GPs */

	assert_int_equal(bpf_mem_alloc_init(&ma, 100, false), 0);
	c = t_cache(&ma, 0, 0);
	for (; rounds < BEHIND_ROUNDS && !got_there; rounds++) {
		unsigned long frees0 = t_stats(&ma, 0).backend_frees, freed;
		struct t_reader *a, *b;
		struct timespec now;
		double deadline;
		int n = 160, cnt;

		for (int i = 0; i < n; i++)
			held[i] = cache_alloc_flushed(&ma);
		/* trims through the grace periods, not to the reuse slots (the
		 * shared CPU's too, which CPU 0 may have borrowed from) */
		t_slots_block(c);
		t_slots_block(t_cache(&ma, 0, bpfmem_nr_cpus()));
		a = t_reader_enter(true);
		for (cnt = t_free_cnt(c); cnt <= c->high_watermark; cnt++)
			bpf_mem_cache_free(&ma, held[--n]);	/* first trim */
		irq_work_flush();
		nanosleep(&settle, NULL);	/* its grace period has begun */
		b = t_reader_enter(true);
		for (cnt = t_free_cnt(c); cnt <= c->high_watermark; cnt++)
			bpf_mem_cache_free(&ma, held[--n]);	/* second trim, behind it */
		irq_work_flush();
		t_reader_leave(a);

		clock_gettime(CLOCK_MONOTONIC, &now);
		deadline = (double)now.tv_sec + now.tv_nsec / 1e9 + 2.0;
		do {
			nanosleep(&(struct timespec){ .tv_nsec = 1000000L }, NULL);
			freed = t_stats(&ma, 0).backend_frees - frees0;
			clock_gettime(CLOCK_MONOTONIC, &now);
		} while (freed == 0 && (double)now.tv_sec + now.tv_nsec / 1e9 < deadline);
		if (freed) {
			got_there = 1;
			nanosleep(&settle, NULL);	/* room for a wrong second free */
			freed = t_stats(&ma, 0).backend_frees - frees0;
			/* one trim's worth: (high - low) / 2 + 1 objects */
			early = (long)freed - ((c->high_watermark - c->low_watermark) / 2 + 1);
		}
		t_reader_leave(b);
		bpfmem_rcu_barrier();
		t_slots_release(c);
		t_slots_release(t_cache(&ma, 0, bpfmem_nr_cpus()));
		while (n)
			bpf_mem_cache_free(&ma, held[--n]);
		assert_int_equal(early, 0);
	}
	print_message("the first trim's grace period ended with reader B inside in round %d "
		      "of %d\n", rounds, BEHIND_ROUNDS);
	if (!got_there)
		fail_msg("in %d rounds the first trimmed batch never went back while reader B "
			 "was inside: the case this test is about did not happen", BEHIND_ROUNDS);
	bpf_mem_alloc_destroy(&ma);
	t_park_trims(park);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_free_rcu_not_reused_while_rcu_reader_inside),
		cmocka_unit_test(test_free_rcu_not_reused_while_rcu_reader_inside),
		cmocka_unit_test(test_free_rcu_memory_stays_valid_while_trace_reader_inside),
		cmocka_unit_test(test_free_rcu_is_ready_for_reuse_after_barrier),
		cmocka_unit_test(test_free_rcu_returns_to_backend_when_no_slot_is_free),
		cmocka_unit_test(test_rcu_barrier_returns_frees_batched_behind_a_callback),
		cmocka_unit_test(test_free_rcu_batched_behind_callback_in_flight_waits_for_own_gp),
		cmocka_unit_test(test_owner_free_rcu_hands_on_whole_batches_behind_a_callback),
		cmocka_unit_test(test_owner_slow_path_hands_on_pending_free_rcu),
		cmocka_unit_test(test_owner_batches_join_the_chain_the_stage_has_not_taken),
		cmocka_unit_test(test_a_grace_periods_objects_join_a_ready_chain_when_every_slot_is_taken),
		cmocka_unit_test(test_a_ready_chain_never_grows_past_its_bound),
		cmocka_unit_test(test_a_long_ready_chain_is_taken_in_pieces),
		cmocka_unit_test(test_an_owned_cpus_free_rcu_objects_come_back_to_it_not_to_the_shared_cpu),
		cmocka_unit_test(test_free_rcu_reentering_the_owner_goes_to_the_atomic_list),
		cmocka_unit_test(test_trimmed_objects_stay_valid_while_rcu_reader_inside),
		cmocka_unit_test(test_trimmed_objects_stay_valid_while_trace_reader_inside),
		cmocka_unit_test(test_trimmed_behind_trace_gp_in_flight_wait_for_own_gp),
	};

	return t_run(tests);
}
