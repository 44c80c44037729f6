// SPDX-License-Identifier: MIT
/*
 * *_free_rcu at full rate under RCU readers: two workers publish objects in
 * a shared table and free with RCU what they displace (often the other
 * worker's), while most of their traffic is their own stream of objects
 * never published.  Readers inside bpfmem_rcu_read_lock() check that an
 * object they loaded keeps its stamp while they look at it: a reuse before
 * the grace period re-stamps it.  What the streams leave cached is bounded.
 */
#include "rel_common.h"
#include "memalloc.h"	/* RCU_PENDING_BYTES, REUSE_SLOTS, TRIM_PARK_OBJS: the bound */

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#define NR_WORKERS	2
#define NR_READERS	2
#define NR_SLOTS	256
#define OWN_BATCH	4	/* own-stream objects per iteration, held together */
#define CHECK_EVERY	4	/* a worker reads a slot itself every CHECK_EVERY iterations */
#define SPIN		256	/* loads between a reader's two checks of one object */
#define FIXED_SIZE	64
/* word 0 of a published object: serial << SIZE_BITS | size, the rest stamped */
#define SIZE_BITS	13
#define SIZE_MASK	((1ull << SIZE_BITS) - 1)

static struct bpf_mem_alloc ma;
static bool fixed;			/* the phase's allocator: written before threads start */
static _Atomic(void *) table[NR_SLOTS];
static atomic_bool stop;

struct thr {
	pthread_t thread;
	int idx;
	int err;			/* attach failure */
	uint64_t rnd;
	unsigned long allocs, nulls, rcu_frees, own_rcu_frees;
	unsigned long reads, hits;	/* read-side sections, and those that found an object */
	unsigned long bad;		/* a stamp changed under a reader, or in the table */
	unsigned long doubled;		/* an own-stream object handed out twice */
};

static struct thr workers[NR_WORKERS], readers[NR_READERS];

static uint64_t next_rnd(struct thr *t)
{
	t->rnd ^= t->rnd << 13;
	t->rnd ^= t->rnd >> 7;
	t->rnd ^= t->rnd << 17;
	return t->rnd;
}

static void *obj_alloc(size_t size)
{
	return fixed ? bpf_mem_cache_alloc(&ma) : bpf_mem_alloc(&ma, size);
}

static void obj_free_rcu(void *p)
{
	if (fixed)
		bpf_mem_cache_free_rcu(&ma, p);
	else
		bpf_mem_free_rcu(&ma, p);
}

/*
 * The tag carries the size, so that whoever finds the object in the table
 * can check it without a second load that could pair with another object.
 * Word 0 alone covers the 8-byte requests.
 */
static void obj_stamp(void *p, size_t size, uint64_t tag)
{
	*(uint64_t *)p = tag;
	rel_stamp((char *)p + 8, size - 8, tag);
}

/* 0 if p still carries `tag` everywhere; word 0 re-read from memory. */
static int obj_check(const void *p, size_t size, uint64_t tag)
{
	if (*(const volatile uint64_t *)p != tag)
		return -1;
	return rel_check((const char *)p + 8, size - 8, tag);
}

/*
 * The size word 0 claims, or 0 if no object of this phase has it: a
 * re-stamped or claimed word must not make us read past the unit.
 */
static size_t obj_size(const void *p, uint64_t tag)
{
	size_t size = tag & SIZE_MASK;

	if (size < 8 || size % 8 || size > BPFMEM_ALLOC_SIZE_MAX - 8 ||
	    (fixed && size != FIXED_SIZE) || !bpfmem_owns(&ma, p, size))
		return 0;
	return size;
}

/* Verify a published object: its word 0 and its stamp agree. */
static int obj_verify(const void *p, uint64_t *tag, size_t *size)
{
	*tag = *(const volatile uint64_t *)p;
	*size = obj_size(p, *tag);
	return *size ? obj_check(p, *size, *tag) : -1;
}

/*
 * One read-side section on a random slot.  The object it finds may be
 * displaced and freed with RCU at any moment, but must not be handed out
 * again before we leave: check it, stay inside a little while the workers
 * run, and check it again.
 */
static void read_slot(struct thr *t)
{
	uint64_t tag;
	size_t size;
	void *p;

	bpfmem_rcu_read_lock();
	p = atomic_load_explicit(&table[next_rnd(t) % NR_SLOTS], memory_order_acquire);
	if (p) {
		t->hits++;
		if (obj_verify(p, &tag, &size)) {
			t->bad++;
		} else {
			/* relaxed loads, not a sleep: a sleep would let the
			 * grace period end before we check again.  Of a flag
			 * that is written: loads of a static nobody writes
			 * fold to a constant, and the loop goes with them. */
			for (int i = 0; i < SPIN && !atomic_load_explicit(&stop, memory_order_relaxed); i++)
				;
			if (obj_check(p, size, tag))
				t->bad++;
		}
	}
	bpfmem_rcu_read_unlock();
	t->reads++;
}

static void *reader_main(void *arg)
{
	struct thr *t = arg;

	while (!atomic_load_explicit(&stop, memory_order_relaxed))
		read_slot(t);
	return NULL;
}

static void *worker_main(void *arg)
{
	struct thr *t = arg;
	uint64_t serial = 0;
	/* away from the vCPU the main thread takes when it frees the table;
	 * pinned to distinct real CPUs, as stress_cross_thread's pinned flow */
	int cpu = bpfmem_nr_cpus() > 16 + NR_WORKERS ? 16 + t->idx : t->idx;

	t->err = bpfmem_thread_attach(cpu, BPFMEM_ATTACH_PIN);
	for (unsigned long n = 0; !t->err && !atomic_load_explicit(&stop, memory_order_relaxed); n++) {
		size_t size = fixed ? FIXED_SIZE : rel_class_req[n % 11];
		void *own[OWN_BATCH], *p, *old;

		/*
		 * The owner's own stream, never published: most of the
		 * traffic, through the private batch and back as ready
		 * chains.  Held together so that a double hand-out among
		 * them finds word 0 claimed.
		 */
		for (int i = 0; i < OWN_BATCH; i++) {
			own[i] = obj_alloc(fixed ? FIXED_SIZE : rel_class_req[(n + i + 1) % 11]);
			if (!own[i]) {
				t->nulls++;
				continue;
			}
			t->allocs++;
			if (rel_claim(own[i]))
				t->doubled++;
		}
		for (int i = 0; i < OWN_BATCH; i++) {
			if (!own[i])
				continue;
			if (rel_unclaim(own[i]))
				t->doubled++;
			obj_free_rcu(own[i]);
			t->own_rcu_frees++;
		}

		p = obj_alloc(size);
		if (!p) {
			t->nulls++;
		} else {
			t->allocs++;
			obj_stamp(p, size, ((++serial * NR_WORKERS + (uint64_t)t->idx) << SIZE_BITS) | size);
			/* release: the stamp before the pointer; acquire: the
			 * other worker's stamp of what we displace */
			old = atomic_exchange_explicit(&table[next_rnd(t) % NR_SLOTS], p,
						       memory_order_acq_rel);
			if (old) {
				uint64_t tag;
				size_t osize;

				/* live until now: a double hand-out re-stamped it */
				if (obj_verify(old, &tag, &osize))
					t->bad++;
				obj_free_rcu(old);
				t->rcu_frees++;
			}
		}
		if (n % CHECK_EVERY == 0)
			read_slot(t);
	}
	return NULL;
}

/*
 * What a size class may still hold once the streams stopped and the grace
 * periods ended, per virtual CPU: a "pool" is what its cache lets wait for
 * a grace period before the owner stops refilling (RCU_PENDING_BYTES
 * worth, at least REUSE_SLOTS * high).  Each of its REUSE_SLOTS ready
 * chains may hold up to a pool, its parked list the rest of one taken in
 * pieces plus at most TRIM_PARK_OBJS trims, its free list and private
 * *_free_rcu batch less than a batch each.  Only a leak into the caches
 * gets past this: a phase frees some 100 pools of each class.
 */
static unsigned long class_bound(const struct bpfmem_cache_stats *st)
{
	unsigned long pool = max((unsigned long)REUSE_SLOTS * st->high_watermark,
				 (unsigned long)RCU_PENDING_BYTES / st->unit_size);

	/* the workers', the main thread's (it frees the table) and the shared CPU */
	return (NR_WORKERS + 2) * ((REUSE_SLOTS + 2) * pool + TRIM_PARK_OBJS);
}

static void run_phase(const char *name, bool fixed_size, double seconds)
{
	long backend_before = rel_backend_outstanding();
	unsigned long allocs = 0, nulls = 0, rcu_frees = 0, own_rcu_frees = 0, left = 0;
	unsigned long reads = 0, hits = 0, bad = 0, doubled = 0, cached = 0, held = 0;
	unsigned long over = 0, ops;
	double fill = 0;
	int nr_classes;
	double t0, secs;

	rel_count_warnings();
	fixed = fixed_size;
	atomic_store(&stop, false);
	memset(workers, 0, sizeof(workers));
	memset(readers, 0, sizeof(readers));
	assert_int_equal(bpf_mem_alloc_init(&ma, fixed ? FIXED_SIZE : 0, false), 0);
	/* a thread stuck in the library would otherwise run into the ctest timeout */
	rel_watchdog((unsigned int)seconds + 60, "stress_free_rcu: a phase still running 60 s "
		     "after its end (deadlock or livelock)");
	t0 = rel_now();
	for (int i = 0; i < NR_WORKERS; i++) {
		workers[i].idx = i;
		workers[i].rnd = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
		assert_int_equal(pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]), 0);
	}
	for (int i = 0; i < NR_READERS; i++) {
		readers[i].idx = i;
		readers[i].rnd = 0xd1b54a32d192ed03ull * (uint64_t)(i + 1);
		assert_int_equal(pthread_create(&readers[i].thread, NULL, reader_main, &readers[i]), 0);
	}
	struct timespec ts = { .tv_sec = (time_t)seconds,
			       .tv_nsec = (long)((seconds - (time_t)seconds) * 1e9) };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	atomic_store(&stop, true);
	for (int i = 0; i < NR_WORKERS; i++)
		assert_int_equal(pthread_join(workers[i].thread, NULL), 0);
	for (int i = 0; i < NR_READERS; i++)
		assert_int_equal(pthread_join(readers[i].thread, NULL), 0);
	secs = rel_now() - t0;
	for (int i = 0; i < NR_WORKERS; i++) {
		struct thr *t = &workers[i];

		assert_int_equal(t->err, 0);
		allocs += t->allocs;
		nulls += t->nulls;
		rcu_frees += t->rcu_frees;
		own_rcu_frees += t->own_rcu_frees;
		reads += t->reads;
		hits += t->hits;
		bad += t->bad;
		doubled += t->doubled;
	}
	for (int i = 0; i < NR_READERS; i++) {
		reads += readers[i].reads;
		hits += readers[i].hits;
		bad += readers[i].bad;
	}

	/* what is left in the table: still live, then through a grace period */
	for (int i = 0; i < NR_SLOTS; i++) {
		void *p = atomic_exchange(&table[i], NULL);
		uint64_t tag;
		size_t size;

		if (!p)
			continue;
		if (obj_verify(p, &tag, &size))
			bad++;
		obj_free_rcu(p);
		left++;
	}
	bpfmem_rcu_barrier();
	nr_classes = bpfmem_nr_size_classes(&ma);
	for (int i = 0; i < nr_classes; i++) {
		struct bpfmem_cache_stats st = { .sz = sizeof(st) };
		unsigned long bound, c_held;

		assert_int_equal(bpfmem_cache_stats(&ma, i, &st), 0);
		bound = class_bound(&st);
		/* from the backend and not back: also what no list counts */
		c_held = st.backend_allocs - st.backend_frees;
		cached += st.cached;
		held += c_held;
		if ((double)c_held / (double)bound > fill)
			fill = (double)c_held / (double)bound;
		if (st.cached > bound || c_held > bound) {
			print_message("class %d (unit %u): cached %lu, held %lu, bound %lu\n",
				      i, st.unit_size, st.cached, c_held, bound);
			over++;
		}
	}
	ops = allocs + rcu_frees + own_rcu_frees + left;
	rel_report(name, "cfg_threads=%d cfg_slots=%d ops=%lu ops_per_s=%.0f rcu_frees=%lu "
		   "own_stream_rcu_frees=%lu nulls=%lu null_rate=%.5f reads=%lu reads_of_objects=%lu "
		   "left_in_table=%lu cached_after_barrier=%lu held_after_barrier=%lu "
		   "max_class_fill_of_bound=%.3f "
		   "seconds=%.1f double_handouts=%lu bad=%lu",
		   NR_WORKERS + NR_READERS, NR_SLOTS, ops, ops / secs, rcu_frees,
		   own_rcu_frees, nulls, nulls ? (double)nulls / (double)(allocs + nulls) : 0.0,
		   reads, hits, left, cached, held, fill, secs, doubled, bad);
	assert_int_equal(bad, 0);
	assert_int_equal(doubled, 0);
	assert_int_equal(over, 0);
	/* the case under test happened: readers found objects, streams ran */
	assert_true(hits > 0);
	assert_true(rcu_frees > 0 && own_rcu_frees > rcu_frees);
	bpf_mem_alloc_destroy(&ma);
	rel_watchdog(0, NULL);
	assert_int_equal(rel_backend_outstanding(), backend_before);
	assert_int_equal(atomic_load(&rel_warnings), 0);
}

static void test_free_rcu_fixed_size_not_reused_under_readers(void **state)
{
	(void)state;
	run_phase("free_rcu_fixed_size", true, rel_seconds(1.5));
}

static void test_free_rcu_any_size_not_reused_under_readers(void **state)
{
	(void)state;
	run_phase("free_rcu_any_size", false, rel_seconds(1.5));
}

/* A failed phase leaves its allocator behind (its threads are joined
 * before any check): the next phase gets a verdict of its own. */
static int phase_teardown(void **state)
{
	(void)state;
	bpf_mem_alloc_destroy(&ma);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_free_rcu_fixed_size_not_reused_under_readers,
					  phase_teardown),
		cmocka_unit_test_teardown(test_free_rcu_any_size_not_reused_under_readers,
					  phase_teardown),
	};

	/* a hang fails with a message instead of running into the ctest timeout */
	rel_watchdog(100, "stress_free_rcu: still running after 100 s");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
