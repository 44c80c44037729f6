/* SPDX-License-Identifier: MIT */
/*
 * Objects that cross virtual CPUs: allocated on one, freed on another
 * (plainly or with RCU while readers look at them), and trimmed objects
 * going back to the cache that handed them out (the tgt hint).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <bpfmem.h>
#include "memalloc.h"
#include "kernel/irq_work.h"
#include "kernel/percpu.h"
#include "kernel/slab.h"
#include "helpers.h"

#define PRODUCER_CPU	1
#define CONSUMER_CPU	2

/* ---- common ---- */


static int setup(void **state)
{
	(void)state;
	atomic_store(&t_warnings, 0);
	bpfmem_set_warn_handler(t_count_warning, NULL);
	/* the test threads attach where they need; the main thread stays off */
	bpfmem_thread_detach();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	bpfmem_set_warn_handler(NULL, NULL);
	return 0;
}

static long slab_outstanding(void)
{
	struct slab_stats st;

	slab_get_stats(&st);
	return st.allocs - st.frees;
}

/* ---- a single-producer single-consumer ring ---- */

#define RING_SIZE 512

struct ring {
	_Atomic unsigned long head, tail;
	void *slot[RING_SIZE];
};

static void ring_push(struct ring *r, void *obj)
{
	unsigned long h = atomic_load_explicit(&r->head, memory_order_relaxed);

	while (h - atomic_load_explicit(&r->tail, memory_order_acquire) == RING_SIZE)
		sched_yield();
	r->slot[h % RING_SIZE] = obj;
	atomic_store_explicit(&r->head, h + 1, memory_order_release);
}

static void *ring_pop(struct ring *r)
{
	unsigned long t = atomic_load_explicit(&r->tail, memory_order_relaxed);
	void *obj;

	while (atomic_load_explicit(&r->head, memory_order_acquire) == t)
		sched_yield();
	obj = r->slot[t % RING_SIZE];
	atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	return obj;
}

/* ---- producer on one CPU, consumer frees on another ---- */

#define XFER_OBJS 100000

static const size_t sizes[] = { 8, 24, 56, 88, 120, 184, 248, 504, 1016, 2040, 4088 };
#define NR_SIZES (sizeof(sizes) / sizeof(sizes[0]))

struct xfer {
	struct bpf_mem_alloc *ma;
	struct ring ring;
	int producer_ret, consumer_ret;
	long nulls;		/* producer allocations retried */
	long bad;		/* objects that arrived with the wrong contents */
};

/* Each object carries its sequence number in its first and last word. */
static void *produce(void *arg)
{
	struct xfer *x = arg;

	x->producer_ret = bpfmem_thread_attach(PRODUCER_CPU, 0);
	for (uint64_t seq = 0; seq < XFER_OBJS; seq++) {
		size_t size = sizes[seq % NR_SIZES];
		uint64_t *obj;

		while (!(obj = bpf_mem_alloc(x->ma, size))) {
			x->nulls++;
			sched_yield();
		}
		obj[0] = seq;
		obj[size / 8 - 1] = seq;
		ring_push(&x->ring, obj);
	}
	return NULL;
}

static void *consume(void *arg)
{
	struct xfer *x = arg;

	x->consumer_ret = bpfmem_thread_attach(CONSUMER_CPU, 0);
	for (uint64_t seq = 0; seq < XFER_OBJS; seq++) {
		size_t size = sizes[seq % NR_SIZES];
		uint64_t *obj = ring_pop(&x->ring);

		if (obj[0] != seq || obj[size / 8 - 1] != seq)
			x->bad++;
		obj[0] = ~0ull;
		obj[size / 8 - 1] = ~0ull;
		bpf_mem_free(x->ma, obj);
	}
	return NULL;
}

static void test_objects_freed_on_another_cpu_are_all_accounted_for(void **state)
{
	static struct xfer x;
	static struct bpf_mem_alloc ma;
	unsigned long trims = 0;
	long outstanding = slab_outstanding();
	pthread_t p, c;

	(void)state;
	memset(&x, 0, sizeof(x));
	x.ma = &ma;
	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	assert_int_equal(pthread_create(&c, NULL, consume, &x), 0);
	assert_int_equal(pthread_create(&p, NULL, produce, &x), 0);
	assert_int_equal(pthread_join(p, NULL), 0);
	assert_int_equal(pthread_join(c, NULL), 0);
	for (int i = 0; i < bpfmem_nr_size_classes(&ma); i++) {
		struct bpfmem_cache_stats st = { .sz = sizeof(st) };

		assert_int_equal(bpfmem_cache_stats(&ma, i, &st), 0);
		trims += st.trims;
	}
	bpf_mem_alloc_destroy(&ma);

	assert_int_equal(x.producer_ret, 0);
	assert_int_equal(x.consumer_ret, 0);
	assert_int_equal(x.bad, 0);
	/* the consumer's cache overflowed and gave objects back */
	assert_true(trims > 0);
	assert_int_equal(slab_outstanding(), outstanding);
	assert_int_equal(atomic_load(&t_warnings), 0);
}

/* ---- free_rcu on another CPU while readers hold the objects ---- */

#define RCU_SLOTS	64
#define RCU_OBJS	20000
#define READERS		2
#define READ_SPINS	32
#define LIVE_MAGIC	0x11ce11ce11ce11ceull

struct rcu_obj {
	_Atomic uint64_t magic;
	_Atomic uint64_t seq;
	char pad[48];
};

struct rcu_xfer {
	struct bpf_mem_alloc *ma;
	_Atomic(struct rcu_obj *) slot[RCU_SLOTS];
	_Atomic bool done;
	int producer_ret, consumer_ret;
	_Atomic long reads, changed_under_reader;
};

static void *rcu_produce(void *arg)
{
	struct rcu_xfer *x = arg;

	x->producer_ret = bpfmem_thread_attach(PRODUCER_CPU, 0);
	for (uint64_t seq = 1; seq <= RCU_OBJS; seq++) {
		_Atomic(struct rcu_obj *) *slot = &x->slot[seq % RCU_SLOTS];
		struct rcu_obj *obj;

		while (!(obj = bpf_mem_cache_alloc(x->ma)))
			sched_yield();
		/* a reader still inside its section would see this change */
		atomic_store_explicit(&obj->seq, seq, memory_order_relaxed);
		atomic_store_explicit(&obj->magic, LIVE_MAGIC, memory_order_relaxed);
		while (atomic_load_explicit(slot, memory_order_relaxed))
			sched_yield();
		atomic_store_explicit(slot, obj, memory_order_release);
	}
	atomic_store(&x->done, true);
	return NULL;
}

static void *rcu_consume(void *arg)
{
	struct rcu_xfer *x = arg;
	bool last_pass = false;

	x->consumer_ret = bpfmem_thread_attach(CONSUMER_CPU, 0);
	while (!last_pass) {
		last_pass = atomic_load(&x->done);
		for (int i = 0; i < RCU_SLOTS; i++) {
			struct rcu_obj *obj = atomic_exchange(&x->slot[i], NULL);

			if (obj)
				bpf_mem_cache_free_rcu(x->ma, obj);
		}
		sched_yield();
	}
	return NULL;
}

static void *rcu_read(void *arg)
{
	struct rcu_xfer *x = arg;

	while (!atomic_load(&x->done)) {
		bpfmem_rcu_read_lock();
		for (int i = 0; i < RCU_SLOTS; i++) {
			struct rcu_obj *obj;
			uint64_t seq;

			obj = atomic_load_explicit(&x->slot[i], memory_order_acquire);
			if (!obj)
				continue;
			seq = atomic_load_explicit(&obj->seq, memory_order_relaxed);
			/* stay on it while the consumer frees it */
			for (int s = 0; s < READ_SPINS; s++) {
				uint64_t m, q;

				m = atomic_load_explicit(&obj->magic, memory_order_relaxed);
				q = atomic_load_explicit(&obj->seq, memory_order_relaxed);
				if (m != LIVE_MAGIC || q != seq)
					atomic_fetch_add(&x->changed_under_reader, 1);
			}
			atomic_fetch_add_explicit(&x->reads, 1, memory_order_relaxed);
		}
		bpfmem_rcu_read_unlock();
	}
	return NULL;
}

static void test_free_rcu_on_another_cpu_never_reuses_objects_readers_hold(void **state)
{
	static struct rcu_xfer x;
	static struct bpf_mem_alloc ma;
	long outstanding = slab_outstanding();
	pthread_t p, c, r[READERS];

	(void)state;
	memset(&x, 0, sizeof(x));
	x.ma = &ma;
	assert_int_equal(bpf_mem_alloc_init(&ma, sizeof(struct rcu_obj), false), 0);
	for (int i = 0; i < READERS; i++)
		assert_int_equal(pthread_create(&r[i], NULL, rcu_read, &x), 0);
	assert_int_equal(pthread_create(&c, NULL, rcu_consume, &x), 0);
	assert_int_equal(pthread_create(&p, NULL, rcu_produce, &x), 0);
	assert_int_equal(pthread_join(p, NULL), 0);
	assert_int_equal(pthread_join(c, NULL), 0);
	for (int i = 0; i < READERS; i++)
		assert_int_equal(pthread_join(r[i], NULL), 0);
	bpf_mem_alloc_destroy(&ma);

	print_message("%ld object reads inside RCU sections\n", atomic_load(&x.reads));
	assert_int_equal(x.producer_ret, 0);
	assert_int_equal(x.consumer_ret, 0);
	assert_true(atomic_load(&x.reads) > 0);
	assert_int_equal(atomic_load(&x.changed_under_reader), 0);
	assert_int_equal(slab_outstanding(), outstanding);
	assert_int_equal(atomic_load(&t_warnings), 0);
}

/* ---- trimmed objects go back to the cache that handed them out ---- */

/*
 * The consumer's cache trims to (32 + 96) / 2 = 64 each time it exceeds 96,
 * handing its 33 oldest objects on.  With whatever it held after attaching
 * (its prefill) plus our frees adding up to 592 objects, it trims 16 times
 * and keeps 64: 528 objects (11 refill batches of 48) go back to the
 * producer's cache, the origin of the last object freed.
 */
#define TGT_TOTAL	592
#define TGT_KEPT	64
#define TGT_TRIMMED	(TGT_TOTAL - TGT_KEPT)
#define TGT_SIZE	64
#define TGT_PREFILL_MAX	32

struct tgt_test {
	struct bpf_mem_alloc *ma;
	void *obj[TGT_TOTAL];		/* handed out by the producer's cache */
	int nfreed;			/* of obj[], freed on the consumer */
	void *prefill[TGT_PREFILL_MAX];	/* on the consumer's list before that */
	int nprefill;
	int ret;
	int collected;			/* trimmed objects allocated again on the producer */
	long backend_allocs, backend_frees;	/* producer cache, after collecting */
	int ttrace_left;		/* still on the producer's tasks-trace lists */
};

static struct bpf_mem_cache *cache_of(struct bpf_mem_alloc *ma, int cpu)
{
	return t_cache(ma, 0, cpu);
}

static struct bpf_mem_cache *origin(void *obj)
{
	return *(struct bpf_mem_cache **)((char *)obj - LLIST_NODE_SZ);
}

static void *node_obj(struct llist_node *n)
{
	return (char *)n + LLIST_NODE_SZ;
}

static void *cache_alloc_wait(struct bpf_mem_alloc *ma)
{
	void *obj = NULL;

	for (int i = 0; i < 1000 && !(obj = bpf_mem_cache_alloc(ma)); i++)
		irq_work_flush();
	return obj;
}

/* Phase 1, on the producer's CPU: TGT_TOTAL objects from its own cache. */
static void *tgt_alloc(void *arg)
{
	struct tgt_test *t = arg;
	struct bpf_mem_cache *mine = cache_of(t->ma, PRODUCER_CPU);
	static void *borrowed[4 * TGT_TOTAL];
	int n = 0, nb = 0;

	t->ret = bpfmem_thread_attach(PRODUCER_CPU, 0);
	while (n < TGT_TOTAL && nb < (int)(sizeof(borrowed) / sizeof(borrowed[0]))) {
		void *obj = cache_alloc_wait(t->ma);

		if (!obj)
			break;
		/* an empty cache lends from the shared CPU: not ours */
		if (origin(obj) == mine)
			t->obj[n++] = obj;
		else
			borrowed[nb++] = obj;
	}
	for (int i = 0; i < nb; i++)
		bpf_mem_cache_free(t->ma, borrowed[i]);
	if (n < TGT_TOTAL)
		t->ret = -ENOMEM;
	return NULL;
}

/* Phase 2, on the consumer's CPU: free them, one trim handled at a time. */
static void *tgt_free(void *arg)
{
	struct tgt_test *t = arg;
	struct bpf_mem_cache *mine = cache_of(t->ma, CONSUMER_CPU);

	t->ret = bpfmem_thread_attach(CONSUMER_CPU, 0);
	irq_work_flush();
	for (struct llist_node *n = mine->free_llist.first; n; n = n->next) {
		if (t->nprefill == TGT_PREFILL_MAX) {
			t->ret = -E2BIG;
			return NULL;
		}
		t->prefill[t->nprefill++] = node_obj(n);
	}
	t->nfreed = TGT_TOTAL - t->nprefill;
	for (int i = 0; i < t->nfreed; i++) {
		bpf_mem_cache_free(t->ma, t->obj[i]);
		irq_work_flush();
	}
	return NULL;
}

static bool trimmed_by_consumer(struct tgt_test *t, void *obj)
{
	for (int i = 0; i < t->nfreed; i++)
		if (t->obj[i] == obj)
			return true;
	for (int i = 0; i < t->nprefill; i++)
		if (t->prefill[i] == obj)
			return true;
	return false;
}

/* Phase 3, on the producer's CPU again: its refills bring them back. */
static void *tgt_collect(void *arg)
{
	struct tgt_test *t = arg;
	struct bpf_mem_cache *mine = cache_of(t->ma, PRODUCER_CPU);
	static void *got[8 * TGT_TOTAL];
	int n = 0;

	t->ret = bpfmem_thread_attach(PRODUCER_CPU, 0);
	while (t->collected < TGT_TRIMMED && n < (int)(sizeof(got) / sizeof(got[0]))) {
		void *obj = cache_alloc_wait(t->ma);

		if (!obj)
			break;
		got[n++] = obj;
		if (origin(obj) == mine && trimmed_by_consumer(t, obj))
			t->collected++;
		/* let every refill this allocation raised finish before the
		 * next one: the order of chains, and so the count of backend
		 * objects below, then no longer depend on when it runs */
		irq_work_flush();
	}
	irq_work_flush();
	t->backend_allocs = atomic_load(&mine->backend_allocs);
	t->backend_frees = atomic_load(&mine->backend_frees);
	t->ttrace_left = (int)(llist_count(mine->free_by_rcu_ttrace.first) +
			       llist_count(mine->waiting_for_gp_ttrace.first));
	for (int i = 0; i < n; i++)
		bpf_mem_cache_free(t->ma, got[i]);
	for (int i = t->nfreed; i < TGT_TOTAL; i++)
		bpf_mem_cache_free(t->ma, t->obj[i]);
	return NULL;
}

static bool chain_all_trimmed_by_consumer(struct tgt_test *t, struct llist_node *n)
{
	for (; n; n = n->next)
		if (!trimmed_by_consumer(t, node_obj(n)))
			return false;
	return true;
}

struct trace_reader {
	sem_t inside, leave;
};

/* Holds an RCU tasks-trace section: nothing trimmed may reach the backend. */
static void *hold_trace_section(void *arg)
{
	struct trace_reader *r = arg;

	bpfmem_rcu_read_lock_trace();
	sem_post(&r->inside);
	sem_wait(&r->leave);
	bpfmem_rcu_read_unlock_trace();
	return NULL;
}

static void run_phase(void *(*fn)(void *), struct tgt_test *t)
{
	pthread_t th;

	assert_int_equal(pthread_create(&th, NULL, fn, t), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(t->ret, 0);
}

static void test_objects_trimmed_on_another_cpu_are_recycled_by_their_origin_cache(void **state)
{
	static struct tgt_test t;
	static struct bpf_mem_alloc ma;
	struct trace_reader reader;
	struct bpf_mem_cache *producer, *consumer;
	long outstanding = slab_outstanding();
	long allocs_before;
	int producer_batch, in_slots, refill_slots;
	pthread_t rd;
	size_t park = t_park_trims(0);	/* trims past the slots: straight to the GPs */

	(void)state;
	memset(&t, 0, sizeof(t));
	t.ma = &ma;
	sem_init(&reader.inside, 0, 0);
	sem_init(&reader.leave, 0, 0);
	assert_int_equal(bpf_mem_alloc_init(&ma, TGT_SIZE, false), 0);
	producer = cache_of(&ma, PRODUCER_CPU);
	consumer = cache_of(&ma, CONSUMER_CPU);
	run_phase(tgt_alloc, &t);
	/* set up by the producer's attach */
	producer_batch = producer->batch;
	assert_int_equal(TGT_TRIMMED % producer_batch, 0);
	irq_work_flush();
	assert_int_equal(pthread_create(&rd, NULL, hold_trace_section, &reader), 0);
	sem_wait(&reader.inside);
	run_phase(tgt_free, &t);
	irq_work_flush();

	assert_int_equal(atomic_load(&consumer->free_cnt), TGT_KEPT);
	assert_int_equal(atomic_load(&consumer->trims), TGT_TRIMMED / 33);
	/* the first trims wait, ready for reuse, in the reuse slots of the
	 * producer that its refill did not fill (the refill keeps up to low +
	 * batch ready: two batches at most); the others, which found them
	 * taken, on its tasks-trace lists */
	in_slots = 0;
	refill_slots = 0;
	for (int i = 0; i < REUSE_SLOTS; i++) {
		struct llist_node *chain = atomic_load(&producer->reuse_chain[i]);

		if (chain && chain_all_trimmed_by_consumer(&t, chain))
			in_slots += (int)llist_count(chain);
		else if (chain)
			refill_slots++;
	}
	assert_true(refill_slots <= 2);
	assert_int_equal(in_slots, (REUSE_SLOTS - refill_slots) * 33);
	assert_int_equal(llist_count(producer->free_by_rcu_ttrace.first) +
			 llist_count(producer->waiting_for_gp_ttrace.first),
			 TGT_TRIMMED - in_slots);
	assert_true(chain_all_trimmed_by_consumer(&t, producer->free_by_rcu_ttrace.first));
	assert_true(chain_all_trimmed_by_consumer(&t, producer->waiting_for_gp_ttrace.first));
	assert_int_equal(llist_count(consumer->free_by_rcu_ttrace.first) +
			 llist_count(consumer->waiting_for_gp_ttrace.first), 0);

	allocs_before = atomic_load(&producer->backend_allocs);
	run_phase(tgt_collect, &t);
	sem_post(&reader.leave);
	assert_int_equal(pthread_join(rd, NULL), 0);
	bpf_mem_alloc_destroy(&ma);
	sem_destroy(&reader.inside);
	sem_destroy(&reader.leave);

	/* all of them came back through the producer's slots and refills ... */
	assert_int_equal(t.collected, TGT_TRIMMED);
	assert_int_equal(t.ttrace_left, 0);
	/* ... which went to the backend only once they were all used up: to
	 * complete the last recycled batch, and for the one kept ready */
	print_message("%ld backend objects while collecting (batch %d)\n",
		      t.backend_allocs - allocs_before, producer_batch);
	assert_in_range(t.backend_allocs - allocs_before, 1, 2 * producer_batch);
	assert_int_equal(t.backend_frees, 0);
	assert_int_equal(slab_outstanding(), outstanding);
	assert_int_equal(atomic_load(&t_warnings), 0);
	t_park_trims(park);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_objects_freed_on_another_cpu_are_all_accounted_for),
		cmocka_unit_test(test_free_rcu_on_another_cpu_never_reuses_objects_readers_hold),
		cmocka_unit_test(
			test_objects_trimmed_on_another_cpu_are_recycled_by_their_origin_cache),
	};

	return t_run_group(tests, setup, teardown);
}
