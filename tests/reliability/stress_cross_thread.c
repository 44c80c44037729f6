// SPDX-License-Identifier: MIT
/*
 * Cross-thread flows: producers allocate on their virtual CPU, consumers on
 * other virtual CPUs check and free (half with RCU), pinned and unpinned,
 * for seconds.  Objects freed far from home travel back through trimming
 * and the RCU lists; the memory parked there must stay bounded.
 */
#include "rel_common.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#define NR_PAIRS	2
#define RING		1024	/* objects in flight per producer/consumer pair */
/*
 * Objects the allocator may hold beyond those in flight: the free lists
 * (high watermark + a batch per class and vCPU) and whatever waits for a
 * grace period.  liburcu-bp grace periods take tens of milliseconds; at the
 * few hundred thousand frees per second this flow reaches, that is some
 * 15,000 objects (measured); more than this means the lists grow without bound.
 */
#define HELD_BOUND	100000L

static struct bpf_mem_alloc any_ma;

struct ring {
	_Atomic unsigned long head, tail;	/* producer writes head, consumer tail */
	void *obj[RING];
	size_t size[RING];
	uint64_t serial[RING];
};

struct pair {
	struct ring ring;
	pthread_t producer, consumer;
	int cpu_p, cpu_c;
	unsigned int flags;
	unsigned long allocs, nulls, frees, rcu_frees, bad;
	int err_p, err_c;	/* attach failures of producer and consumer */
};

static struct pair pairs[NR_PAIRS];
static atomic_bool stop;		/* producers stop */
static atomic_bool drained;		/* producers are gone: consumers stop when empty */

static void *producer_main(void *arg)
{
	struct pair *pr = arg;
	struct ring *r = &pr->ring;
	uint64_t serial = (uint64_t)(pr - pairs) << 48;

	if (pr->cpu_p >= 0)
		pr->err_p = bpfmem_thread_attach(pr->cpu_p, pr->flags);
	for (unsigned long n = 0; !pr->err_p && !atomic_load_explicit(&stop, memory_order_relaxed); n++) {
		unsigned long h = atomic_load_explicit(&r->head, memory_order_relaxed);
		size_t sz = rel_class_req[n % 11] - (n % 3) * 8;
		void *p;

		if (h - atomic_load_explicit(&r->tail, memory_order_acquire) == RING)
			continue;	/* full */
		p = bpf_mem_alloc(&any_ma, sz);
		if (!p) {
			pr->nulls++;
			continue;
		}
		pr->allocs++;
		rel_stamp(p, sz, ++serial);
		r->obj[h % RING] = p;
		r->size[h % RING] = sz;
		r->serial[h % RING] = serial;
		atomic_store_explicit(&r->head, h + 1, memory_order_release);
	}
	return NULL;
}

static void *consumer_main(void *arg)
{
	struct pair *pr = arg;
	struct ring *r = &pr->ring;

	if (pr->cpu_c >= 0)
		pr->err_c = bpfmem_thread_attach(pr->cpu_c, pr->flags);
	for (;;) {
		unsigned long t = atomic_load_explicit(&r->tail, memory_order_relaxed);
		void *p;

		if (t == atomic_load_explicit(&r->head, memory_order_acquire)) {
			if (pr->err_c)
				break;
			/* re-read head after `drained`: the last push may have landed since */
			if (atomic_load(&drained) &&
			    t == atomic_load_explicit(&r->head, memory_order_acquire))
				break;
			continue;
		}
		p = r->obj[t % RING];
		if (rel_check(p, r->size[t % RING], r->serial[t % RING]))
			pr->bad++;
		if (t & 1) {
			bpf_mem_free_rcu(&any_ma, p);
			pr->rcu_frees++;
		} else {
			bpf_mem_free(&any_ma, p);
		}
		pr->frees++;
		atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	}
	return NULL;
}

static void run_flow(const char *name, bool attach, unsigned int flags, double seconds)
{
	long backend_before = rel_backend_outstanding();
	unsigned long allocs = 0, frees = 0, rcu_frees = 0, nulls = 0, bad = 0, samples = 0;
	long max_held = 0;
	double t0, t;

	rel_count_warnings();
	atomic_store(&stop, false);
	atomic_store(&drained, false);
	memset(pairs, 0, sizeof(pairs));
	assert_int_equal(bpf_mem_alloc_init(&any_ma, 0, false), 0);
	for (int i = 0; i < NR_PAIRS; i++) {
		/* producer and consumer on different vCPUs (and real CPUs when pinned) */
		pairs[i].cpu_p = attach ? 16 + 2 * i : -1;
		pairs[i].cpu_c = attach ? 16 + 2 * i + 1 : -1;
		pairs[i].flags = flags;
		assert_int_equal(pthread_create(&pairs[i].producer, NULL, producer_main, &pairs[i]), 0);
		assert_int_equal(pthread_create(&pairs[i].consumer, NULL, consumer_main, &pairs[i]), 0);
	}
	t0 = rel_now();
	while ((t = rel_now()) - t0 < seconds) {
		long in_flight = 0, held;

		for (int i = 0; i < NR_PAIRS; i++)
			in_flight += (long)(atomic_load(&pairs[i].ring.head) - atomic_load(&pairs[i].ring.tail));
		/* racy by nature: in_flight may be off by the objects moving now */
		held = rel_ma_outstanding(&any_ma) - in_flight;
		if (held > max_held)
			max_held = held;
		samples++;
		struct timespec ts = { .tv_nsec = 10 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < NR_PAIRS; i++)
		assert_int_equal(pthread_join(pairs[i].producer, NULL), 0);
	atomic_store(&drained, true);
	for (int i = 0; i < NR_PAIRS; i++) {
		assert_int_equal(pthread_join(pairs[i].consumer, NULL), 0);
		assert_int_equal(pairs[i].err_p, 0);
		assert_int_equal(pairs[i].err_c, 0);
		allocs += pairs[i].allocs;
		frees += pairs[i].frees;
		rcu_frees += pairs[i].rcu_frees;
		nulls += pairs[i].nulls;
		bad += pairs[i].bad;
	}
	rel_report(name, "cfg_threads=%d ops=%lu ops_per_s=%.0f rcu_frees=%lu nulls=%lu "
		   "max_objects_in_caches_and_rcu=%ld cfg_bound=%ld samples=%lu seconds=%.1f bad=%lu",
		   2 * NR_PAIRS, allocs + frees, (allocs + frees) / seconds, rcu_frees, nulls,
		   max_held, HELD_BOUND, samples, seconds, bad);
	assert_int_equal(bad, 0);
	assert_int_equal(allocs, frees);	/* consumers drained every ring */
	assert_true(allocs > 0);
	assert_true(max_held < HELD_BOUND);
	bpf_mem_alloc_destroy(&any_ma);
	assert_int_equal(rel_backend_outstanding(), backend_before);
	assert_int_equal(atomic_load(&rel_warnings), 0);
}

static void test_cross_thread_pinned_flow_stays_bounded(void **state)
{
	(void)state;
	run_flow("cross_thread_pinned", true, BPFMEM_ATTACH_PIN, rel_seconds(2.5));
}

static void test_cross_thread_unpinned_flow_stays_bounded(void **state)
{
	(void)state;
	run_flow("cross_thread_unpinned", false, 0, rel_seconds(2.5));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cross_thread_pinned_flow_stays_bounded),
		cmocka_unit_test(test_cross_thread_unpinned_flow_stays_bounded),
	};

	/* a hang fails with a message instead of running into the ctest timeout */
	rel_watchdog(100, "stress_cross_thread: still running after 100 s");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
