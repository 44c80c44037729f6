/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers of the unit tests: reaching an allocator's internal caches,
 * capturing warnings, and reader threads parked inside RCU read-side sections.
 */
#ifndef BPFMEM_TESTS_HELPERS_H
#define BPFMEM_TESTS_HELPERS_H

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <bpfmem.h>
#include "memalloc.h"
#include "kernel/cpu.h"
#include "kernel/irq_work.h"
#include "kernel/percpu.h"
#include "kernel/slab.h"

#define T_HDR 8		/* the object header in front of every pointer handed out */

/* Library warnings seen so far, for tests that must see none: install
 * t_count_warning with bpfmem_set_warn_handler and reset t_warnings. */
static _Atomic int t_warnings __attribute__((unused));

static inline void t_count_warning(const char *msg, void *arg)
{
	(void)msg;
	(void)arg;
	atomic_fetch_add(&t_warnings, 1);
}

/*
 * Group setup of every suite: the main thread owns virtual CPU 0, so that
 * prefill and the fast path land on a known cache.
 */
static inline int t_attach_cpu0(void **state)
{
	(void)state;
	return bpfmem_thread_attach(0, 0) == 0 ? 0 : -1;
}

/* The copy of size class `idx` (0 for fixed-size allocators) on `cpu`. */
static inline struct bpf_mem_cache *t_cache(const struct bpf_mem_alloc *ma, int idx, int cpu)
{
	if (ma->cache)
		return cache_on(ma->cache, 0, cpu);
	return cache_on(ma->caches, CACHE_OFF(idx), cpu);
}

/* The cache named by an allocated object's header. */
static inline struct bpf_mem_cache *t_owner(const void *p)
{
	return *(struct bpf_mem_cache *const *)((const char *)p - T_HDR);
}

/* Index of the any-size class with this unit size, -1 if none. */
static inline int t_class_idx(int unit_size)
{
	for (int i = 0; i < NUM_CACHES; i++)
		if (bpf_mem_sizes[i] == unit_size)
			return i;
	return -1;
}

static inline int t_free_cnt(struct bpf_mem_cache *c)
{
	return atomic_load(&c->free_cnt);
}

/* Objects in ready chains (refill batches, trims, RCU-freed batches)
 * waiting for the owner in its reuse slots. */
static inline unsigned long t_mailbox_cnt(struct bpf_mem_cache *c)
{
	return (unsigned long)reuse_ready(c);
}

/* ---- the watchdog: a test that hangs fails, saying which one ---- */

/*
 * One thread watches the test that is running: still running after
 * T_WATCHDOG_SECONDS (default 60) ends the process with a line starting
 * "WATCHDOG:" (the mutation step tells a hang from a failed check by it).
 * A failed assertion longjmps out of the test, so whatever waits for that
 * test's clean-up would otherwise hang the next test, or the binary.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const char *test;	/* the test running, NULL between tests */
	unsigned long gen;	/* +1 per test started */
	bool started;
} t_wd = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static inline int t_watchdog_seconds(void)
{
	const char *s = getenv("T_WATCHDOG_SECONDS");
	int v = s ? atoi(s) : 0;

	return v > 0 ? v : 60;
}

static inline void *t_watchdog_main(void *arg)
{
	int limit = t_watchdog_seconds();

	(void)arg;
	pthread_mutex_lock(&t_wd.lock);
	for (;;) {
		unsigned long gen;
		struct timespec until;

		while (!t_wd.test)
			pthread_cond_wait(&t_wd.cond, &t_wd.lock);
		gen = t_wd.gen;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += limit;
		while (t_wd.test && t_wd.gen == gen) {
			if (pthread_cond_timedwait(&t_wd.cond, &t_wd.lock, &until) == ETIMEDOUT &&
			    t_wd.test && t_wd.gen == gen) {
				fprintf(stderr, "WATCHDOG: %s still running after %d s: it hangs\n",
					t_wd.test, limit);
				fflush(stderr);
				_exit(1);
			}
		}
	}
	return NULL;
}

/* Test setup: arm the watchdog for this test (its name is initial_state). */
static inline int t_watchdog_arm(void **state)
{
	sigset_t all, old;
	pthread_t t;

	pthread_mutex_lock(&t_wd.lock);
	if (!t_wd.started) {
		/* process-directed signals of the tests never land on it */
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		t_wd.started = pthread_create(&t, NULL, t_watchdog_main, NULL) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (t_wd.started)
			pthread_detach(t);
	}
	t_wd.test = *state;
	t_wd.gen++;
	pthread_cond_signal(&t_wd.cond);
	pthread_mutex_unlock(&t_wd.lock);
	*state = NULL;
	return 0;
}

static inline void t_readers_release_all(void);

/* Test teardown, also after a failed assertion: disarm, and let go of the
 * readers the test left inside. */
static inline int t_watchdog_disarm(void **state)
{
	(void)state;
	t_readers_release_all();
	pthread_mutex_lock(&t_wd.lock);
	t_wd.test = NULL;
	pthread_cond_signal(&t_wd.cond);
	pthread_mutex_unlock(&t_wd.lock);
	return 0;
}

/*
 * Runs the suite under the watchdog; T_FILTER=<glob> in the environment
 * runs only the matching tests.  Allocators in tests are `static`: a failed
 * assertion skips the destroy, and a stack allocator left in the library's
 * registry of live allocators would corrupt later tests.
 */
static inline int t_run_tests(const char *group, const struct CMUnitTest *tests, size_t n,
			      CMFixtureFunction setup, CMFixtureFunction teardown)
{
	struct CMUnitTest *watched = calloc(n, sizeof(*watched));
	const char *filter = getenv("T_FILTER");
	int ret;

	if (!watched)
		return -1;
	for (size_t i = 0; i < n; i++) {
		watched[i] = tests[i];
		/* tests with fixtures of their own are watched as a whole below */
		if (!tests[i].setup_func && !tests[i].teardown_func && !tests[i].initial_state) {
			watched[i].setup_func = t_watchdog_arm;
			watched[i].teardown_func = t_watchdog_disarm;
			watched[i].initial_state = (void *)tests[i].name;
		}
	}
	if (filter)
		cmocka_set_test_filter(filter);
	ret = _cmocka_run_group_tests(group, watched, n, setup, teardown);
	free(watched);
	return ret;
}

#define t_run_group(tests, setup, teardown)				\
	t_run_tests(#tests, tests, sizeof(tests) / sizeof((tests)[0]), setup, teardown)

/* The common case: the main thread owns virtual CPU 0. */
#define t_run(tests) t_run_group(tests, t_attach_cpu0, NULL)

/* Is `obj` in one of c's ready chains (waiting in a reuse slot)? */
static inline bool t_ready_holds(struct bpf_mem_cache *c, const void *obj)
{
	for (int i = 0; i < REUSE_SLOTS; i++)
		for (struct llist_node *n = atomic_load(&c->reuse_chain[i]);
		     n && n != REUSE_BUSY; n = n->next)
			if ((char *)n + T_HDR == (const char *)obj)
				return true;
	return false;
}

/* Takes every free reuse slot of c (as a producer stuck between claiming
 * and filling would), so that what would go there takes the grace-period
 * path instead; t_slots_release() undoes it. */
static inline void t_slots_block(struct bpf_mem_cache *c)
{
	for (int i = 0; i < REUSE_SLOTS; i++) {
		struct llist_node *none = NULL;

		atomic_compare_exchange_strong(&c->reuse_chain[i], &none, REUSE_BUSY);
	}
}

static inline void t_slots_release(struct bpf_mem_cache *c)
{
	for (int i = 0; i < REUSE_SLOTS; i++) {
		struct llist_node *busy = REUSE_BUSY;

		atomic_compare_exchange_strong(&c->reuse_chain[i], &busy, NULL);
	}
}

/* Takes every slot of c, ready chains included (saved in ready[]), as
 * producers stuck between claiming and filling would: nothing reaches the
 * owner through them; t_slots_give_back() undoes it. */
static inline void t_slots_take(struct bpf_mem_cache *c, struct llist_node **ready)
{
	for (int i = 0; i < REUSE_SLOTS; i++)
		ready[i] = atomic_exchange(&c->reuse_chain[i], REUSE_BUSY);
}

static inline void t_slots_give_back(struct bpf_mem_cache *c, struct llist_node **ready)
{
	for (int i = 0; i < REUSE_SLOTS; i++)
		atomic_store(&c->reuse_chain[i], ready[i]);
}

/* What the owner (this thread, nothing else running) does when its list
 * runs dry, for every ready chain at once: the slots end up empty. */
static inline void t_owner_takes_ready_chains(struct bpf_mem_cache *c)
{
	for (int i = 0; i < REUSE_SLOTS; i++) {
		struct llist_node *chain = atomic_exchange(&c->reuse_chain[i], NULL);

		if (!chain)
			continue;
		llist_last(chain)->next = c->free_llist.first;
		c->free_llist.first = chain;
		atomic_store(&c->free_cnt, t_free_cnt(c) + atomic_load(&c->reuse_cnt[i]));
	}
}

/*
 * The refill thread stands still between these two calls: the fork
 * handlers park it between works.  Raising still queues works; nothing in
 * between may wait for one (irq_work_flush, destroy, barriers).
 */
static inline void t_refill_stall(void)
{
	irq_work_before_fork();
}

static inline void t_refill_resume(void)
{
	irq_work_after_fork_parent();
}

/* Sets the bytes of trims a cache parks for its owner, returns the old
 * value: tests of the trims' grace-period path park none (0) and put the
 * default back at the end. */
static inline size_t t_park_trims(size_t bytes)
{
	size_t old = memalloc_seam_trim_park_bytes;

	memalloc_seam_trim_park_bytes = bytes;
	return old;
}

static inline struct bpfmem_cache_stats t_stats(const struct bpf_mem_alloc *ma, int idx)
{
	struct bpfmem_cache_stats st = { .sz = sizeof(st) };

	assert_int_equal(bpfmem_cache_stats(ma, idx, &st), 0);
	return st;
}

static inline struct slab_stats t_slab(void)
{
	struct slab_stats st;

	slab_get_stats(&st);
	return st;
}

/* ---- warnings ---- */

#define T_WARN_MAX 16

struct t_warn_log {
	pthread_mutex_t lock;
	int n;
	char msg[T_WARN_MAX][256];
};

/* Warnings may come from the refill or RCU threads: hence the lock. */
static inline void t_warn_capture(const char *msg, void *arg)
{
	struct t_warn_log *log = arg;

	pthread_mutex_lock(&log->lock);
	if (log->n < T_WARN_MAX)
		snprintf(log->msg[log->n], sizeof(log->msg[0]), "%s", msg);
	log->n++;
	pthread_mutex_unlock(&log->lock);
}

static inline void t_warn_start(struct t_warn_log *log)
{
	memset(log, 0, sizeof(*log));
	pthread_mutex_init(&log->lock, NULL);
	bpfmem_set_warn_handler(t_warn_capture, log);
}

static inline int t_warn_stop(struct t_warn_log *log)
{
	int n;

	bpfmem_set_warn_handler(NULL, NULL);
	pthread_mutex_lock(&log->lock);
	n = log->n;
	pthread_mutex_unlock(&log->lock);
	return n;
}

/* ---- a reader parked inside an RCU read-side section ---- */

/*
 * Readers live in a static pool, not on the test's stack: a test that fails
 * while its reader is inside leaves the frame, and the teardown lets the
 * reader go (else every later grace period of the binary waits for it).
 */
struct t_reader {
	pthread_t thread;
	bool trace;		/* RCU tasks trace instead of RCU */
	bool used;		/* pool slot taken (main thread only) */
	sem_t inside, release;
	_Atomic int released;	/* set just before the read-side section ends */
};

#define T_READERS_MAX 8
static struct t_reader t_readers[T_READERS_MAX];

static inline void *t_reader_main(void *arg)
{
	struct t_reader *r = arg;

	if (r->trace)
		bpfmem_rcu_read_lock_trace();
	else
		bpfmem_rcu_read_lock();
	sem_post(&r->inside);
	while (sem_wait(&r->release))
		;
	atomic_store(&r->released, 1);
	if (r->trace)
		bpfmem_rcu_read_unlock_trace();
	else
		bpfmem_rcu_read_unlock();
	return NULL;
}

/* Returns once the reader is inside its read-side section. */
static inline struct t_reader *t_reader_enter(bool trace)
{
	struct t_reader *r = NULL;

	for (int i = 0; i < T_READERS_MAX && !r; i++)
		if (!t_readers[i].used)
			r = &t_readers[i];
	assert_non_null(r);
	r->used = true;
	r->trace = trace;
	atomic_store(&r->released, 0);
	sem_init(&r->inside, 0, 0);
	sem_init(&r->release, 0, 0);
	assert_int_equal(pthread_create(&r->thread, NULL, t_reader_main, r), 0);
	while (sem_wait(&r->inside))
		;
	return r;
}

/* Lets the reader leave its section and waits until it has. */
static inline void t_reader_leave(struct t_reader *r)
{
	sem_post(&r->release);
	assert_int_equal(pthread_join(r->thread, NULL), 0);
	sem_destroy(&r->inside);
	sem_destroy(&r->release);
	r->used = false;
}

static inline void t_readers_release_all(void)
{
	for (int i = 0; i < T_READERS_MAX; i++) {
		struct t_reader *r = &t_readers[i];

		if (!r->used)
			continue;
		print_error("a reader was still inside at the end of the test: let go\n");
		sem_post(&r->release);
		pthread_join(r->thread, NULL);
		sem_destroy(&r->inside);
		sem_destroy(&r->release);
		r->used = false;
	}
}

#endif /* BPFMEM_TESTS_HELPERS_H */
