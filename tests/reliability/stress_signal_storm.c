// SPDX-License-Identifier: MIT
/*
 * Signal storm: every worker thread gets its own 20 kHz timer signal
 * (timer_create + SIGEV_THREAD_ID).  The handler allocates, stamps, checks
 * and frees objects of every size class and frees objects the interrupted
 * loop published, so it lands inside alloc, free, refill hand-over and the
 * first-use attach.  Afterwards every object is accounted for.
 */
#include "rel_common.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#define NR_WORKERS	4
#define NR_SLOTS	64
#define TIMER_NS	50000	/* 20 kHz: at least 10 kHz reaches each thread */
#define FIXED_SIZE	40
#define PCPU_SIZE	48
/* what a phase must have seen to count (a few percent of what it sees;
 * ThreadSanitizer delivers signals only at its own points, far fewer) */
#if defined(__SANITIZE_THREAD__)
#define MIN_SCALE	10
#else
#define MIN_SCALE	1
#endif
#define MIN_SIGNALS	(100 / MIN_SCALE)
#define MIN_IN_LIB	(100 / MIN_SCALE)
#define MIN_STOLEN	(100 / MIN_SCALE)

static struct bpf_mem_alloc any_ma, fixed_ma, pcpu_ma;

struct counters {
	unsigned long allocs, frees, nulls, bad;
	unsigned long doubled;	/* objects handed out while we held them */
};

struct worker {
	int idx;
	bool pin;		/* attach with BPFMEM_ATTACH_PIN */
	bool implicit;		/* no attach: first library call may be in the handler */
	pthread_t thread;
	timer_t timer;
	/* published objects: the loop stores, the handler or the loop takes */
	_Atomic(void *) slot[NR_SLOTS];
	size_t size[NR_SLOTS];
	uint64_t serial[NR_SLOTS];
	int kind[NR_SLOTS];	/* 0 any-size, 1 fixed */
	struct counters loop;	/* written by the loop only */
	struct counters irq;	/* written by the handler only */
	unsigned long signals, stolen, overruns;
	unsigned long in_lib_hits;	/* handler runs that interrupted a library call */
	volatile sig_atomic_t in_lib;	/* the loop is inside a library call */
	uint64_t next_serial;	/* handler uses odd serials, the loop even ones */
	uint64_t irq_serial;
	double seconds;
	unsigned long shared_iters;	/* loop iterations run without a vCPU of its own */
	int err;		/* setup failure, checked by the main thread */
};

static struct worker workers[NR_WORKERS];
static __thread struct worker *self;
static atomic_bool stop;

static void free_obj(struct worker *w, struct counters *ct, void *p, int kind, unsigned long n)
{
	if (rel_unclaim(p))
		ct->bad++;
	if (kind == 1) {
		if ((n & 7) == 1)
			bpf_mem_cache_free_rcu(&fixed_ma, p);
		else
			bpf_mem_cache_free(&fixed_ma, p);
	} else {
		if ((n & 7) == 1)
			bpf_mem_free_rcu(&any_ma, p);
		else
			bpf_mem_free(&any_ma, p);
	}
	ct->frees++;
	(void)w;
}

/* Take a published object back, check its stamp, free it. */
static void take_slot(struct worker *w, struct counters *ct, int i, unsigned long n)
{
	void *p = atomic_exchange(&w->slot[i], NULL);

	atomic_signal_fence(memory_order_seq_cst);
	if (!p)
		return;
	if (rel_check((char *)p + 8, w->size[i] - 8, w->serial[i]))
		ct->bad++;
	free_obj(w, ct, p, w->kind[i], n);
}

static void storm_handler(int sig)
{
	struct worker *w = self;
	int saved = errno;

	(void)sig;
	if (!w)
		return;
	w->signals++;
	if (w->in_lib)
		w->in_lib_hits++;
	/* expirations that found the previous signal still pending */
	w->overruns += (unsigned long)timer_getoverrun(w->timer);
	/* every size class, stamped and checked while the loop is frozen */
	for (int c = 0; c < 11; c++) {
		size_t sz = rel_class_req[c] - (w->signals % 8);
		uint64_t serial = (w->irq_serial += 2) | 1;
		void *p = bpf_mem_alloc(&any_ma, sz);

		if (!p) {
			w->irq.nulls++;
			continue;
		}
		w->irq.allocs++;
		if (rel_claim(p))
			w->irq.doubled++;
		rel_stamp((char *)p + 8, sz > 8 ? sz - 8 : 0, serial);
		if (rel_check((char *)p + 8, sz > 8 ? sz - 8 : 0, serial))
			w->irq.bad++;
		free_obj(w, &w->irq, p, 0, w->signals + c);
	}
	void *f = bpf_mem_cache_alloc(&fixed_ma);

	if (f) {
		w->irq.allocs++;
		if (rel_claim(f))
			w->irq.doubled++;
		rel_stamp((char *)f + 8, FIXED_SIZE - 8, 3);
		if (rel_check((char *)f + 8, FIXED_SIZE - 8, 3))
			w->irq.bad++;
		free_obj(w, &w->irq, f, 1, w->signals);
	} else {
		w->irq.nulls++;
	}
	void *pc = bpf_mem_cache_alloc(&pcpu_ma);

	if (pc) {
		void *mine = bpfmem_this_cpu_ptr(*(void **)pc);

		w->irq.allocs++;
		if (mine)
			memset(mine, 0x5a, PCPU_SIZE);
		bpf_mem_cache_free(&pcpu_ma, pc);
		w->irq.frees++;
	} else {
		w->irq.nulls++;
	}
	/* free what the interrupted loop allocated */
	unsigned long before = w->irq.frees;

	take_slot(w, &w->irq, (int)(w->signals % NR_SLOTS), w->signals);
	w->stolen += w->irq.frees - before;
	errno = saved;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct sigevent sev = {
		.sigev_notify = SIGEV_THREAD_ID,
		.sigev_signo = SIGUSR1,
	};
	struct itimerspec its = {
		.it_interval = { .tv_nsec = TIMER_NS },
		.it_value = { .tv_nsec = TIMER_NS },
	};
	unsigned long n = 0;
	double t0;

	/* cmocka asserts only on the main thread: failures go to w->err */
	if (!w->implicit)
		w->err = bpfmem_thread_attach(8 + w->idx, w->pin ? BPFMEM_ATTACH_PIN : 0);
	sev._sigev_un._tid = rel_gettid();	/* sigev_notify_thread_id */
	self = w;
	if (!w->err && timer_create(CLOCK_MONOTONIC, &sev, &w->timer))
		w->err = -errno;
	if (!w->err && timer_settime(w->timer, 0, &its, NULL))
		w->err = -errno;
	if (w->err)
		return NULL;
	t0 = rel_now();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		int i = (int)(n % NR_SLOTS);
		int kind = (n / NR_SLOTS) % 4 == 3;
		size_t sz = kind ? FIXED_SIZE : rel_class_req[n % 11] - (n % 5) * 8 % rel_class_req[n % 11];
		void *p;

		w->in_lib = 1;
		atomic_signal_fence(memory_order_seq_cst);
		take_slot(w, &w->loop, i, n);
		w->shared_iters += bpfmem_current_cpu() < 0;
		p = kind ? bpf_mem_cache_alloc(&fixed_ma) : bpf_mem_alloc(&any_ma, sz);
		atomic_signal_fence(memory_order_seq_cst);
		w->in_lib = 0;
		if (!p) {
			w->loop.nulls++;
			n++;
			continue;
		}
		w->loop.allocs++;
		if (rel_claim(p))
			w->loop.doubled++;
		w->size[i] = sz;
		w->serial[i] = (w->next_serial += 2);
		w->kind[i] = kind;
		rel_stamp((char *)p + 8, sz - 8, w->serial[i]);
		atomic_signal_fence(memory_order_seq_cst);
		atomic_store(&w->slot[i], p);
		n++;
	}
	if (timer_delete(w->timer))
		w->err = -errno;
	w->seconds = rel_now() - t0;
	return NULL;
}

static void run_storm(const char *name, int nr_workers, double seconds, unsigned long fail_every)
{
	struct sigaction sa = { .sa_handler = storm_handler };
	struct slab_stats before, after;
	unsigned long allocs = 0, frees = 0, live = 0, bad = 0, nulls = 0, signals = 0, stolen = 0;
	unsigned long doubled = 0, in_lib_hits = 0;
	char injected[96] = "";
	unsigned long overruns = 0;
	unsigned long shared_iters = 0;
	long faults;
	double min_rate = 1e18, secs = 0;

	rel_count_warnings();
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	assert_int_equal(sigaction(SIGUSR1, &sa, NULL), 0);
	slab_get_stats(&before);
	assert_int_equal(bpf_mem_alloc_init(&any_ma, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&fixed_ma, FIXED_SIZE, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&pcpu_ma, PCPU_SIZE, true), 0);

	memset(workers, 0, sizeof(workers));
	atomic_store(&stop, false);
	slab_fail_every(fail_every);
	for (int i = 0; i < nr_workers; i++) {
		workers[i].idx = i;
		workers[i].pin = i == 0 || i == 1;
		/* with few vCPUs (BPFMEM_NR_CPUS) all attach implicitly and the
		 * overflow lands on the shared CPU's locked path */
		workers[i].implicit = (nr_workers > 2 && i == nr_workers - 1) ||
				      bpfmem_nr_cpus() < 16;
		assert_int_equal(pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]), 0);
	}
	struct timespec ts = { .tv_sec = (time_t)seconds,
			       .tv_nsec = (long)((seconds - (time_t)seconds) * 1e9) };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	atomic_store(&stop, true);
	/* workers that cannot stop (stuck in the library) would hang until the
	 * ctest timeout: fail fast and say so */
	rel_watchdog(60, "stress_signal_storm: workers still running 60 s after the end of "
		     "the phase (deadlock or livelock)");
	for (int i = 0; i < nr_workers; i++)
		assert_int_equal(pthread_join(workers[i].thread, NULL), 0);
	rel_watchdog(0, NULL);
	slab_fail_every(0);
	slab_get_stats(&after);
	faults = after.failed - before.failed;

	for (int i = 0; i < nr_workers; i++) {
		struct worker *w = &workers[i];
		unsigned long wlive = 0;

		assert_int_equal(w->err, 0);

		for (int s = 0; s < NR_SLOTS; s++)
			wlive += atomic_load(&w->slot[s]) != NULL;
		doubled += w->loop.doubled + w->irq.doubled;
		in_lib_hits += w->in_lib_hits;
		allocs += w->loop.allocs + w->irq.allocs;
		frees += w->loop.frees + w->irq.frees;
		bad += w->loop.bad + w->irq.bad;
		nulls += w->loop.nulls + w->irq.nulls;
		signals += w->signals;
		stolen += w->stolen;
		overruns += w->overruns;
		shared_iters += w->shared_iters;
		live += wlive;
		if (w->signals / w->seconds < min_rate)
			min_rate = w->signals / w->seconds;
		secs += w->seconds;
		/* the handler really ran on every thread */
		if (w->signals < MIN_SIGNALS)
			fail_msg("worker %d got %lu signals (want >= %d)", i, w->signals, MIN_SIGNALS);
		for (int s = 0; s < NR_SLOTS; s++)
			take_slot(w, &w->loop, s, s);
	}
	secs /= nr_workers;
	if (fail_every)
		snprintf(injected, sizeof(injected),
			 "injected=backend-fails-every-nth-alloc cfg_fail_every=%lu ", fail_every);
	rel_report(name, "%scfg_threads=%d cfg_vcpus=%d cfg_timer_hz_per_thread=%d "
		   "shared_cpu_iterations=%lu "
		   "signals=%lu signals_per_s=%.0f min_thread_signals_per_s=%.0f timer_overruns=%lu "
		   "ops=%lu nulls=%lu stolen_from_loop=%lu live_at_stop=%lu backend_faults=%ld "
		   "seconds=%.1f handlers_inside_library=%lu double_handouts=%lu bad=%lu",
		   injected, nr_workers,
		   bpfmem_nr_cpus(), (int)(1000000000 / TIMER_NS), shared_iters, signals,
		   signals / secs, min_rate, overruns, allocs + frees, nulls, stolen, live, faults,
		   secs, in_lib_hits, doubled, bad);
	assert_int_equal(doubled, 0);
	assert_int_equal(bad, 0);

	signal(SIGUSR1, SIG_IGN);
	bpf_mem_alloc_destroy(&any_ma);
	bpf_mem_alloc_destroy(&fixed_ma);
	bpf_mem_alloc_destroy(&pcpu_ma);
	slab_get_stats(&after);
	/* the backend got back everything it gave */
	assert_int_equal(after.allocs - before.allocs, after.frees - before.frees);
	assert_int_equal(atomic_load(&rel_warnings), 0);

	/* the cases under test happened: handlers interrupted library calls and
	 * freed objects the interrupted loop had published */
	if (in_lib_hits < MIN_IN_LIB || stolen < MIN_STOLEN)
		fail_msg("the storm did not get there: %lu handlers inside a library call (want "
			 ">= %d), %lu objects taken from the loop (want >= %d)", in_lib_hits,
			 MIN_IN_LIB, stolen, MIN_STOLEN);
	/* fewer vCPUs than workers running for seconds: the shared path was exercised */
	if (bpfmem_nr_cpus() < nr_workers)
		assert_true(shared_iters > 0);
	assert_true(fail_every ? faults > 0 : faults == 0);
}

/* One worker per core, pinned: nothing but the timer preempts the loop. */
static void test_signal_storm_pinned_workers_account_for_every_object(void **state)
{
	(void)state;
	run_storm(getenv("BPFMEM_NR_CPUS") ? "signal_storm_few_vcpus_2_workers"
					    : "signal_storm_pinned", 2, rel_seconds(2), 0);
}

/* More workers than cores, one of them never attached: the handler also
 * lands in the first-use attach and in preempted library calls. */
static void test_signal_storm_oversubscribed_accounts_for_every_object(void **state)
{
	(void)state;
	run_storm(getenv("BPFMEM_NR_CPUS") ? "signal_storm_few_vcpus"
					    : "signal_storm_oversubscribed", NR_WORKERS, rel_seconds(2), 0);
}

/* The same with every 3rd backend allocation failing: NULLs, never a lost
 * or doubled object, and the backend still gets everything back. */
static void test_signal_storm_with_backend_faults_accounts_for_every_object(void **state)
{
	(void)state;
	run_storm(getenv("BPFMEM_NR_CPUS") ? "signal_storm_few_vcpus_backend_faults"
					    : "signal_storm_backend_faults", NR_WORKERS, rel_seconds(2), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signal_storm_pinned_workers_account_for_every_object),
		cmocka_unit_test(test_signal_storm_oversubscribed_accounts_for_every_object),
		cmocka_unit_test(test_signal_storm_with_backend_faults_accounts_for_every_object),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
