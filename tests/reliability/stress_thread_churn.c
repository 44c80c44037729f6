// SPDX-License-Identifier: MIT
/*
 * Thread churn: NR_THREADS short-lived threads allocate, free locally, free with
 * RCU, hand objects to the main thread and exit, some attached, some
 * detached, some whose first library call is made by a signal handler, and
 * all signalled again and again up to and through their exit.  Live threads
 * never share a virtual CPU, exited threads give theirs back, and nothing
 * leaks.
 */
#include "rel_common.h"
#include "kernel/cpu.h"
#include "memalloc.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

/* ThreadSanitizer makes each thread's start, exit and signal far slower */
#if defined(__SANITIZE_THREAD__)
#define NR_THREADS	2000
#else
#define NR_THREADS	10000
#endif
#define CONCURRENT	8
#define PER_THREAD	24
#define FIXED_SZ	64
#define HANDOFF_MAX	(CONCURRENT * PER_THREAD)
/* even ids that do not detach, one in three, signal themselves after the
 * exit hook: NR_THREADS / 6 of them.  Only those that own a vCPU then have
 * the hook run (the shared path arms none): ask for half of those, and for
 * enough of those that the path is covered even when few vCPUs make most
 * threads take the shared path */
#define MIN_LATE_OWNED		(NR_THREADS / 60)

static struct bpf_mem_alloc any_ma, fixed_ma;

/* vcpu -> id of the live test thread holding it (0: none) */
static _Atomic int vcpu_holder[65536];

struct result {
	int cpu;		/* vcpu seen after the first allocation, -1: shared */
	int overlap;		/* another live thread held the same vcpu */
	int bad;		/* stamp mismatch */
	/* written by the handler only: it may interrupt the body's updates */
	unsigned long h_allocs, h_frees, h_bad;
	unsigned long h_first_use;	/* ran before the body's first library call */
	unsigned long h_exiting;	/* ran after the library's exit hook */
	int late_owned;		/* signals itself after the hook, which its vCPU arms */
	unsigned long allocs, frees;
	volatile sig_atomic_t used;	/* the body made its first library call */
};

static struct result results[CONCURRENT];
static void *handoff[HANDOFF_MAX];
static uint64_t handoff_serial[HANDOFF_MAX];
static size_t handoff_size[HANDOFF_MAX];
static int handoff_n;
static pthread_mutex_t handoff_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread struct result *my;
/* every wave's threads are alive together while they hold their vCPU */
static pthread_barrier_t wave;

static void first_use_handler(int sig)
{
	struct result *r = my;
	bool first, exiting = this_cpu_state() == CPU_STATE_EXITING;
	void *p;

	(void)sig;
	first = r && !r->used;
	p = bpf_mem_alloc(&any_ma, 40);
	if (r) {
		r->h_first_use += first;
		r->h_exiting += exiting;
	}
	/* a thread that never used the library: NULL is allowed, a free is not lost */
	if (!p)
		return;
	if (!r) {
		/* signalled before the thread set `my`: nothing to count into */
		bpf_mem_free(&any_ma, p);
		return;
	}
	r->h_allocs++;
	if (rel_claim(p))
		r->h_bad++;
	rel_stamp((char *)p + 8, 32, 99);
	if (rel_check((char *)p + 8, 32, 99) || rel_unclaim(p))
		r->h_bad++;
	bpf_mem_free(&any_ma, p);
	r->h_frees++;
}

/*
 * The signaller keeps sending SIGUSR2 to the current wave's threads, so
 * handlers also run in the middle of allocations, during thread exit and
 * after the exit destructor released the vCPU.  The main thread stops it
 * (Dekker-style handshake on seq_cst atomics) before it joins the wave.
 */
static pthread_t wave_threads[CONCURRENT];
static atomic_int wave_open, signaller_busy;
static atomic_bool signaller_quit;
static unsigned long signals_sent;
static atomic_int bodies_done;	/* wave threads past their last library call */

static void *signaller_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&signaller_quit)) {
		atomic_store(&signaller_busy, 1);
		if (atomic_load(&wave_open))
			for (int i = 0; i < CONCURRENT; i++)
				signals_sent += pthread_kill(wave_threads[i], SIGUSR2) == 0;
		atomic_store(&signaller_busy, 0);
		sched_yield();
	}
	return NULL;
}

static void close_wave(void)
{
	atomic_store(&wave_open, 0);
	while (atomic_load(&signaller_busy))
		sched_yield();
}

/*
 * Keys' destructors run in creation order: this one is created after the
 * library's, so a signal it raises lands after the library's exit hook
 * released the thread's vCPU (the signaller's rarely hit that window).
 */
static pthread_key_t late_key;

static void signal_after_exit_hook(void *arg)
{
	(void)arg;
	pthread_kill(pthread_self(), SIGUSR2);
}

static void *churn_thread(void *arg)
{
	long id = (long)arg;
	struct result *r = &results[id % CONCURRENT];
	void *mine[PER_THREAD];
	uint64_t serial = (uint64_t)id << 16;
	int expected = 0;

	my = r;
	if (id % 5 == 0)
		pthread_kill(pthread_self(), SIGUSR2);	/* first library call in a handler */
	for (int i = 0; i < PER_THREAD; i++) {
		size_t sz = rel_class_req[(id + i) % 11];

		r->used = 1;
		mine[i] = (i & 3) == 3 ? bpf_mem_cache_alloc_flags(&fixed_ma, BPFMEM_GFP_KERNEL)
				       : bpf_mem_alloc(&any_ma, sz);
		if (mine[i]) {
			r->allocs++;
			if (rel_claim(mine[i]))
				r->bad++;
			rel_stamp((char *)mine[i] + 8, ((i & 3) == 3 ? FIXED_SZ : sz) - 8,
				  serial + (uint64_t)i);
		}
	}
	r->cpu = bpfmem_current_cpu();
	if (r->cpu >= 0 && !atomic_compare_exchange_strong(&vcpu_holder[r->cpu], &expected, (int)id + 1))
		r->overlap = 1;
	pthread_barrier_wait(&wave);
	for (int i = 0; i < PER_THREAD; i++) {
		size_t sz = (i & 3) == 3 ? FIXED_SZ : rel_class_req[(id + i) % 11];

		if (!mine[i])
			continue;
		if (rel_check((char *)mine[i] + 8, sz - 8, serial + (uint64_t)i))
			r->bad++;
		if ((i & 3) == 3) {
			if (rel_unclaim(mine[i]))
				r->bad++;
			bpf_mem_cache_free(&fixed_ma, mine[i]);
		} else if (i % 3 == 0) {
			/* cross-thread: the main thread frees it after we are gone */
			pthread_mutex_lock(&handoff_lock);
			handoff[handoff_n] = mine[i];
			handoff_size[handoff_n] = sz;
			handoff_serial[handoff_n++] = serial + (uint64_t)i;
			pthread_mutex_unlock(&handoff_lock);
			continue;
		} else if (rel_unclaim(mine[i])) {
			r->bad++;
		} else if (i % 3 == 1) {
			bpf_mem_free_rcu(&any_ma, mine[i]);
		} else {
			bpf_mem_free(&any_ma, mine[i]);
		}
		r->frees++;
	}
	if (r->cpu >= 0 && !r->overlap)
		atomic_store(&vcpu_holder[r->cpu], 0);
	/* half detach, half leave it to the exit destructor */
	if (id & 1)
		bpfmem_thread_detach();
	else if (id % 3 == 0) {
		r->late_owned = bpfmem_current_cpu() >= 0;
		pthread_setspecific(late_key, (void *)1);
	}
	atomic_fetch_add(&bodies_done, 1);
	return NULL;
}

/* Objects of every class of the any-size allocator that may be on their
 * way through a grace period, per vCPU (RCU_PENDING_MAX of each class). */
static long rcu_allowance(void)
{
	long n = 0;

	for (int i = 0; i < 11; i++)
		n += RCU_PENDING_BYTES / (long)(rel_class_req[i] + 8);
	return n;
}

static void test_thread_churn_reuses_vcpus_and_leaks_nothing(void **state)
{
	struct sigaction sa = { .sa_handler = first_use_handler };
	unsigned long allocs = 0, frees = 0;
	long shared = 0, overlap = 0, bad = 0, handler_allocs = 0, max_held = 0;
	long first_use_in_handler = 0, after_exit_hook = 0, late_owned = 0;
	long backend_before = rel_backend_outstanding();
	int nr_cpus = bpfmem_nr_cpus();
	double t0 = rel_now();
	char seen[65536] = { 0 };
	int distinct = 0;

	(void)state;
	rel_count_warnings();
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR2, &sa, NULL), 0);
	pthread_t signaller;

	assert_int_equal(pthread_barrier_init(&wave, NULL, CONCURRENT), 0);
	atomic_store(&signaller_quit, false);
	assert_int_equal(pthread_create(&signaller, NULL, signaller_main, NULL), 0);
	assert_int_equal(bpf_mem_alloc_init(&any_ma, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&fixed_ma, FIXED_SZ, false), 0);
	/* after the library's key (created by the first init) */
	assert_int_equal(pthread_key_create(&late_key, signal_after_exit_hook), 0);

	rel_watchdog(100, "stress_thread_churn: the churn still running after 100 s "
		     "(a thread stuck in the library, or in its exit)");
	for (long base = 0; base < NR_THREADS; base += CONCURRENT) {
		pthread_t th[CONCURRENT];

		memset(results, 0, sizeof(results));
		for (int i = 0; i < CONCURRENT; i++)
			assert_int_equal(pthread_create(&th[i], NULL, churn_thread, (void *)(base + i)), 0);
		memcpy(wave_threads, th, sizeof(th));
		atomic_store(&wave_open, 1);
		/* signals keep coming while the threads run their exit path */
		while (atomic_load(&bodies_done) < CONCURRENT)
			sched_yield();
		close_wave();
		atomic_store(&bodies_done, 0);
		for (int i = 0; i < CONCURRENT; i++)
			assert_int_equal(pthread_join(th[i], NULL), 0);
		for (int i = 0; i < CONCURRENT; i++) {
			struct result *r = &results[i];

			shared += r->cpu < 0;
			overlap += r->overlap;
			bad += r->bad;
			handler_allocs += r->h_allocs;
			first_use_in_handler += r->h_first_use != 0;
			after_exit_hook += r->h_exiting;
			late_owned += r->late_owned;
			bad += r->h_bad;
			allocs += r->allocs + r->h_allocs;
			frees += r->frees + r->h_frees;
			if (r->cpu >= 0 && !seen[r->cpu]) {
				seen[r->cpu] = 1;
				distinct++;
			}
		}
		/* the main thread frees what the exited threads handed over */
		for (int i = 0; i < handoff_n; i++) {
			if (rel_check((char *)handoff[i] + 8, handoff_size[i] - 8, handoff_serial[i]) ||
			    rel_unclaim(handoff[i]))
				bad++;
			bpf_mem_free(&any_ma, handoff[i]);
			frees++;
		}
		handoff_n = 0;
		long held = rel_ma_outstanding(&any_ma) + rel_ma_outstanding(&fixed_ma);

		if (held > max_held)
			max_held = held;
	}
	double secs = rel_now() - t0;

	atomic_store(&signaller_quit, true);
	assert_int_equal(pthread_join(signaller, NULL), 0);
	rel_watchdog(0, NULL);

	rel_report(getenv("BPFMEM_NR_CPUS") ? "thread_churn_few_vcpus" : "thread_churn",
		   "cfg_threads=%d cfg_concurrent=%d cfg_vcpus=%d distinct_vcpus_used=%d "
		   "shared_path_threads=%ld "
		   "first_use_in_handler=%ld late_owned_threads=%ld handlers_after_exit_hook=%ld "
		   "async_signals=%lu "
		   "handler_allocs=%ld ops=%lu max_backend_objects=%ld seconds=%.1f bad=%ld",
		   NR_THREADS, CONCURRENT, nr_cpus, distinct, shared, first_use_in_handler,
		   late_owned, after_exit_hook, signals_sent, handler_allocs, allocs + frees, max_held, secs,
		   bad);
	assert_int_equal(bad, 0);
	assert_int_equal(overlap, 0);
	/* every fifth thread makes its first library call in a handler (a
	 * signal to itself); the signaller's may come even earlier */
	if (first_use_in_handler < NR_THREADS / 5 || late_owned < MIN_LATE_OWNED ||
	    after_exit_hook < late_owned / 2)
		fail_msg("the churn did not get there: %ld threads made their first library call "
			 "in a handler (want >= %d), %ld handler runs after the exit hook of %ld "
			 "threads that asked for one with a vCPU (want >= half, and >= %d of them)",
			 first_use_in_handler, NR_THREADS / 5, after_exit_hook, late_owned,
			 MIN_LATE_OWNED);
	if (nr_cpus > CONCURRENT) {
		/* exited threads released their vCPU: every newcomer found one */
		assert_int_equal(shared, 0);
	} else {
		/* more live threads than vCPUs: the overflow used the shared path */
		assert_true(shared >= (long)(NR_THREADS / CONCURRENT) * (CONCURRENT - nr_cpus));
		assert_true(distinct <= nr_cpus);
	}
	/* the vCPUs' caches are reused, not grown per thread: at most the
	 * high watermark and the parked trims of every class on every vCPU,
	 * plus one RCU batch, plus what a cache may have on its way through
	 * an RCU grace period before its owner waits for it instead of the
	 * backend (RCU_PENDING_BYTES) */
	assert_true(max_held < (long)(nr_cpus + 1) * (11 * (96 + TRIM_PARK_OBJS) + 96 +
						    rcu_allowance()) + NR_THREADS);
	bpfmem_rcu_barrier();
	bpf_mem_alloc_destroy(&any_ma);
	bpf_mem_alloc_destroy(&fixed_ma);
	assert_int_equal(rel_backend_outstanding(), backend_before);
	assert_int_equal(atomic_load(&rel_warnings), 0);
	pthread_key_delete(late_key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_thread_churn_reuses_vcpus_and_leaks_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
