/* SPDX-License-Identifier: MIT */
/*
 * The scenarios, child side: each runs one backend once and reports numbers
 * with emit_metric().  The table at the bottom is the list the parent walks;
 * a new scenario (the kernel-style hash map) is one function and one entry.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <bpfmem.h>
#include "bench.h"

static const size_t pair_sizes[] = { 16, 64, 96, 192, 512, 4096 };
#define NR_SIZES (sizeof(pair_sizes) / sizeof(pair_sizes[0]))

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static inline uint64_t rnd(void)
{
	/* xorshift64: cheap enough not to show up in the latencies */
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static bool fast_rows(const struct backend *b)
{
	return b->pair_loop != NULL;
}

/* ---- pair and batch128: the fast path, size by size ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

#define CHUNK_NS 20000u
#define MAX_CHUNKS 20000

static uint64_t run_chunk(const struct backend *b, size_t size, bool batch, long n, long *nulls)
{
	static void *v[BENCH_MAX_BATCH];

	return batch ? b->batch_loop(size, n, v, nulls) : b->pair_loop(size, n, nulls);
}

/* Double n until one chunk takes CHUNK_NS; best of three per step, so one
 * preempted or cold step cannot stop it early with chunks that time the
 * clock itself.  Also warms the caches up. */
static long chunk_ops(const struct backend *b, size_t size, bool batch)
{
	long n = 16;

	for (;;) {
		uint64_t best = UINT64_MAX;

		for (int k = 0; k < 3; k++) {
			long dummy = 0;
			uint64_t t = run_chunk(b, size, batch, n, &dummy);

			best = t < best ? t : best;
		}
		if (best >= CHUNK_NS || n > (1l << 40))
			return n;
		n *= 2;
	}
}

struct timed {
	double ns;		/* median chunk, ns per op */
	double xlimit;		/* median of chunk / adjacent limit chunk */
	long nulls, ops;
};

/*
 * The machine may be shared, and this VM's CPUs change speed (the same
 * loop alternates between two speeds for seconds at a time).  So the loop
 * runs in chunks of ~20 us, each followed by a chunk of the limit doing the
 * same work: the median chunk gives the time, the median of the ratios of
 * adjacent chunks gives "x limit" measured under the same conditions.
 */
static struct timed timed_loop(const struct backend *b, const struct backend *lim,
			       size_t size, size_t lim_size, bool batch,
			       const struct bench_opts *o)
{
	static uint64_t chunk[MAX_CHUNKS];
	static double ratio[MAX_CHUNKS];
	long n = chunk_ops(b, size, batch), ln = lim ? chunk_ops(lim, lim_size, batch) : 0;
	long per = batch ? BENCH_MAX_BATCH : 1, nr = 0;
	uint64_t spent = 0, target = (uint64_t)(o->target_s * 1e9);
	struct timed r = { 0 };

	while (spent < target && nr < MAX_CHUNKS) {
		uint64_t t = run_chunk(b, size, batch, n, &r.nulls);

		chunk[nr] = t;
		spent += t;
		if (lim) {
			long dummy = 0;
			uint64_t lt = run_chunk(lim, lim_size, batch, ln, &dummy);

			ratio[nr] = ((double)t / (double)n) / ((double)lt / (double)ln);
		}
		nr++;
	}
	qsort(chunk, (size_t)nr, sizeof(chunk[0]), cmp_u64);
	r.ops = nr * n * per;
	r.ns = (double)chunk[nr / 2] / (double)(n * per);
	if (lim) {
		qsort(ratio, (size_t)nr, sizeof(ratio[0]), cmp_double);
		r.xlimit = ratio[nr / 2];
	} else {
		r.xlimit = 1.0;
	}
	return r;
}

static int run_sweep(const struct backend *b, const struct bench_opts *o, bool batch)
{
	const char *scen = batch ? "batch128" : "pair";
	/* rows built with BPFMEM_INLINE pair with the inlined limit */
	const struct backend *lim = backend_by_name(b->loops_only && b->kind != BK_LIMIT ?
						    "limit-inl" : "limit");
	long all_nulls = 0, all_ops = 0;
	char name[64];

	if (lim == b)
		lim = NULL;
	else
		lim->setup(0);
	for (size_t i = 0; i < NR_SIZES; i++) {
		/* the 4096-byte class serves at most 4088 bytes behind the header */
		size_t size = pair_sizes[i];
		size_t hdr_size = size < BPFMEM_ALLOC_SIZE_MAX ? size : size - 8;
		size_t req = b->kind == BK_PEER ? size : hdr_size;
		struct timed r;
		int err = b->setup(size);

		if (err) {
			emit_note("setup(%zu) failed: %s", size, strerror(-err));
			return 1;
		}
		r = timed_loop(b, lim, req, hdr_size, batch, o);
		b->teardown();
		snprintf(name, sizeof(name), "%s.%zu", scen, size);
		emit_metric(name, "ns", true, r.ns);
		snprintf(name, sizeof(name), "~%s.%zu.xlimit", scen, size);
		emit_metric(name, "x", true, r.xlimit);
		all_nulls += r.nulls;
		all_ops += r.ops;
	}
	snprintf(name, sizeof(name), "%s.null%%", scen);
	emit_metric(name, "%", true, 100.0 * (double)all_nulls / (double)all_ops);
	return 0;
}

static int run_pair(const struct backend *b, const struct bench_opts *o)
{
	return run_sweep(b, o, false);
}

static int run_batch(const struct backend *b, const struct bench_opts *o)
{
	return run_sweep(b, o, true);
}

/* ---- xthread: producer and consumer on two pinned virtual CPUs ---- */

#define RING 4096

static struct {
	_Atomic unsigned long head __attribute__((aligned(64)));
	_Atomic unsigned long tail __attribute__((aligned(64)));
	void *slot[RING] __attribute__((aligned(64)));
	const struct backend *b;
	long objs, nulls, done;
	int pin_err[2];
	pthread_barrier_t start;
} xq;

static void *xproducer(void *arg)
{
	const struct backend *b = xq.b;
	unsigned long head = 0;

	xq.pin_err[0] = pin_thread_cpu(0);
	pthread_barrier_wait(&xq.start);
	for (long i = 0; i < xq.objs; i++) {
		void *p = b->alloc(64);

		/*
		 * Every object is delivered: on NULL the producer counts one
		 * failed object and retries until the allocator recovers, so
		 * the rate includes the wait and the NULL rate does not depend
		 * on how fast the retry loop spins.
		 */
		if (!p) {
			xq.nulls++;
			while (!(p = b->alloc(64)))
				cpu_relax();
		}
		*(volatile char *)p = 1;
		while (head - atomic_load_explicit(&xq.tail, memory_order_acquire) >= RING)
			sched_yield();
		xq.slot[head % RING] = p;
		atomic_store_explicit(&xq.head, ++head, memory_order_release);
	}
	atomic_store_explicit(&xq.head, head | (1ul << 62), memory_order_release);
	return NULL;
}

static void *xconsumer(void *arg)
{
	const struct backend *b = xq.b;
	unsigned long tail = 0;

	xq.pin_err[1] = pin_thread_cpu(1);
	pthread_barrier_wait(&xq.start);
	for (;;) {
		unsigned long head = atomic_load_explicit(&xq.head, memory_order_acquire);
		bool last = head & (1ul << 62);

		head &= ~(1ul << 62);
		if (tail == head) {
			if (last)
				break;
			sched_yield();
			continue;
		}
		while (tail != head) {
			b->free(xq.slot[tail % RING]);
			tail++;
			xq.done++;
		}
		atomic_store_explicit(&xq.tail, tail, memory_order_release);
	}
	return NULL;
}

static int run_xthread(const struct backend *b, const struct bench_opts *o)
{
	pthread_t pt, ct;
	uint64_t t0, t1;
	int err = b->setup(64);

	if (err) {
		emit_note("setup failed: %s", strerror(-err));
		return 1;
	}
	xq.b = b;
	xq.objs = o->xthread_objs;
	pthread_barrier_init(&xq.start, NULL, 3);
	pthread_create(&ct, NULL, xconsumer, NULL);
	pthread_create(&pt, NULL, xproducer, NULL);
	pthread_barrier_wait(&xq.start);
	t0 = now_ns();
	pthread_join(pt, NULL);
	pthread_join(ct, NULL);
	t1 = now_ns();
	if (xq.pin_err[0] || xq.pin_err[1])
		emit_note("pinning failed: %d %d", xq.pin_err[0], xq.pin_err[1]);
	emit_metric("xthread.Mobj/s", "Mobj/s", false, (double)xq.done * 1e3 / (double)(t1 - t0));
	emit_metric("xthread.null%", "%", true, 100.0 * (double)xq.nulls / (double)xq.objs);
	b->teardown();
	return 0;
}

/* ---- tail: per-call latency under churn, ~10,000 live objects ---- */

#define LIVE 10000
#define TAIL_MAX_SIZE 512
#define TAIL_WINDOW 256

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double pct(const uint32_t *sorted, long n, double q)
{
	long i = (long)(q * (double)(n - 1) + 0.5);

	return (double)sorted[i];
}

static const double tail_q[] = { 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999,
				 0.99995, 0.99999 };

/* emit_metric() of "<scen>.<metric>" */
static void emit_metric_s(const char *scen, const char *metric, const char *unit, bool lower,
			  double v)
{
	char name[64];

	snprintf(name, sizeof(name), "%s.%s", scen, metric);
	emit_metric(name, unit, lower, v);
}

/* `max`: requests of 8..max bytes (the fixed-size cache serves max) */
static int tail_sweep(const struct backend *b, const struct bench_opts *o, size_t max,
		      const char *scen)
{
	static void *live[LIVE];
	long n = o->tail_ops, nulls = 0;
	uint32_t *lat = malloc(sizeof(*lat) * (size_t)n), *all = malloc(sizeof(*all) * (size_t)n);
	double cpn = cycles_per_ns();
	char name[64];
	int err;

	if (!lat || !all)
		return 1;
	/* the fixed-size cache serves every request from its one size */
	err = b->setup(max);
	if (err) {
		emit_note("setup failed: %s", strerror(-err));
		return 1;
	}
	/* fill to 10,000 live objects; an allocator that returns NULL while
	 * its refill catches up is waited for, outside the measurement */
	for (int i = 0; i < LIVE; i++) {
		size_t size = 8 + rnd() % (max - 7);

		live[i] = b->alloc(size);
		for (long spin = 0; !live[i] && spin < 1000000; spin++) {
			sched_yield();
			live[i] = b->alloc(size);
		}
	}
	/*
	 * On a shared machine the top 0.01% is otherwise made of preemptions
	 * by other processes.  Samples are taken in windows of TAIL_WINDOW; a
	 * window during which the thread was preempted (involuntary context
	 * switch) is dropped and counted.  Voluntary switches (an allocator
	 * that blocks) stay in.
	 */
	long kept = 0, windows = 0, dropped = 0;
	uint64_t null_cycles = 0;
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	long ivcsw = ru.ru_nivcsw, vcsw0 = ru.ru_nvcsw;

	for (long i = 0; i < n; i++) {
		int j = (int)(rnd() % LIVE);
		size_t size = 8 + rnd() % (max - 7);
		uint64_t c0, c1;

		if (live[j])
			b->free(live[j]);
		c0 = cycles();
		live[j] = b->alloc(size);
		c1 = cycles();
		if (live[j]) {
			*(volatile char *)live[j] = 1;
		} else {
			nulls++;
			null_cycles += c1 - c0;
		}
		lat[kept] = (uint32_t)(c1 - c0 > UINT32_MAX ? UINT32_MAX : c1 - c0);
		all[i] = lat[kept++];
		if ((i + 1) % TAIL_WINDOW == 0) {
			getrusage(RUSAGE_THREAD, &ru);
			windows++;
			if (ru.ru_nivcsw != ivcsw) {
				kept -= TAIL_WINDOW;
				dropped++;
				ivcsw = ru.ru_nivcsw;
			}
		}
	}
	/* an allocator that sleeps or waits shows up here, not as preemption */
	getrusage(RUSAGE_THREAD, &ru);
	double vcs_per_k = 1000.0 * (double)(ru.ru_nvcsw - vcsw0) / (double)n;

	/* every sample, preemptions included: what a user on this machine saw */
	qsort(all, (size_t)n, sizeof(*all), cmp_u32);
	double p9999_all = pct(all, n, 0.9999) / cpn;

	free(all);
	n = kept;
	for (int i = 0; i < LIVE; i++)
		if (live[i])
			b->free(live[i]);
	b->teardown();

	if (n < TAIL_WINDOW) {
		emit_note("preempted in every window: no latency left to report");
		free(lat);
		return 1;
	}
	qsort(lat, (size_t)n, sizeof(*lat), cmp_u32);
	emit_metric_s(scen, "p50", "ns", true, pct(lat, n, 0.5) / cpn);
	emit_metric_s(scen, "p99", "ns", true, pct(lat, n, 0.99) / cpn);
	emit_metric_s(scen, "p99.9", "ns", true, pct(lat, n, 0.999) / cpn);
	emit_metric_s(scen, "p99.99", "ns", true, pct(lat, n, 0.9999) / cpn);
	emit_metric_s(scen, "p99.99_all", "ns", true, p9999_all);
	emit_metric_s(scen, "max", "ns", true, (double)lat[n - 1] / cpn);
	emit_metric_s(scen, "null%", "%", true, 100.0 * (double)nulls / (double)o->tail_ops);
	/* what a failed call costs: the slow path of an empty cache */
	emit_metric_s(scen, "null_mean", "ns", true, nulls ? (double)null_cycles / cpn / (double)nulls : 0);
	emit_metric_s(scen, "preempted%", "%", true, 100.0 * (double)dropped / (double)windows);
	emit_metric_s(scen, "sleeps/1k", "count", true, vcs_per_k);
	for (size_t i = 0; i < sizeof(tail_q) / sizeof(tail_q[0]); i++) {
		snprintf(name, sizeof(name), "~%s.q%g", scen, tail_q[i]);
		emit_metric(name, "ns", true, pct(lat, n, tail_q[i]) / cpn);
	}

	/* what two back-to-back timer reads cost: part of every number above */
	n = o->tail_ops;
	for (long i = 0; i < n && i < 1000000; i++) {
		uint64_t c0 = cycles(), c1 = cycles();

		lat[i] = (uint32_t)(c1 - c0);
	}
	n = n < 1000000 ? n : 1000000;
	qsort(lat, (size_t)n, sizeof(*lat), cmp_u32);
	emit_metric_s(scen, "timer_p50", "ns", true, pct(lat, n, 0.5) / cpn);
	emit_metric_s(scen, "timer_p99.99", "ns", true, pct(lat, n, 0.9999) / cpn);
	free(lat);
	return 0;
}

static int run_tail(const struct backend *b, const struct bench_opts *o)
{
	return tail_sweep(b, o, TAIL_MAX_SIZE, "tail");
}

/* The whole range, where the large classes keep only 2 to 12 objects. */
static int run_tail_all(const struct backend *b, const struct bench_opts *o)
{
	return tail_sweep(b, o, BPFMEM_ALLOC_SIZE_MAX - 8, "tail_all");
}

/* ---- signal: alloc+free inside a handler ---- */

#define SIG_PAIRS 32

static const struct backend *sig_b;
/* written by the handler: volatile, or the compiler keeps them in registers
 * across raise() */
static volatile uint64_t sig_cycles;
static volatile long sig_pairs, sig_nulls;

static void cost_handler(int sig)
{
	int saved = errno;
	uint64_t c0 = cycles();

	for (int i = 0; i < SIG_PAIRS; i++) {
		void *p = sig_b->alloc(64);

		if (!p) {
			sig_nulls++;
			continue;
		}
		*(volatile char *)p = 1;
		sig_b->free(p);
	}
	sig_cycles += cycles() - c0;
	sig_pairs += SIG_PAIRS;
	errno = saved;
}

static int run_signal(const struct backend *b, const struct bench_opts *o)
{
	struct sigaction sa = { .sa_handler = cost_handler, .sa_flags = SA_RESTART };
	int err = b->setup(64);
	long nsig = o->quick ? 1000 : 10000;
	double cpn = cycles_per_ns();

	if (err) {
		emit_note("setup failed: %s", strerror(-err));
		return 1;
	}
	sig_b = b;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	/* warm up outside the handler: first use, prefill */
	for (int i = 0; i < 256; i++) {
		void *p = b->alloc(64);

		if (p)
			b->free(p);
	}
	for (long i = 0; i < nsig / 10; i++)
		raise(SIGUSR1);
	sig_cycles = 0;
	sig_pairs = sig_nulls = 0;
	for (long i = 0; i < nsig; i++)
		raise(SIGUSR1);
	emit_metric("signal.pair", "ns", true, (double)sig_cycles / cpn / (double)sig_pairs);
	emit_metric("signal.null%", "%", true, 100.0 * (double)sig_nulls / (double)sig_pairs);
	signal(SIGUSR1, SIG_DFL);
	b->teardown();
	return 0;
}

/* ---- storm: survive a signal storm whose handler allocates ---- */

/*
 * Every object carries a stamp (word 0) and its complement (word 1) that
 * only its holder writes.  When the holder finds someone else's stamp, the
 * allocator handed the object to two holders at once (or corrupted it).
 */
struct held {
	uint64_t *p;
	uint64_t stamp;
};

#define MAIN_HELD 64
#define HANDLER_HELD 8

static struct held handler_held[HANDLER_HELD];
static _Atomic unsigned long storm_progress, storm_handled;
static volatile unsigned long storm_bad, storm_handler_nulls, storm_main_nulls, storm_seq;
/* set by one thread, polled by the other (watchdog and main): atomics, since
 * volatile sig_atomic_t only orders against a signal handler on the same thread */
static atomic_bool storm_stop, storm_done;
static uint64_t storm_t0;

static bool held_check_free(const struct backend *b, struct held *h)
{
	bool ok = true;

	if (!h->p)
		return true;
	if (h->p[0] != h->stamp || h->p[1] != ~h->stamp)
		ok = false;
	b->free(h->p);
	h->p = NULL;
	return ok;
}

static void held_alloc(const struct backend *b, struct held *h, size_t size, uint64_t tag,
		       volatile unsigned long *nulls)
{
	uint64_t *p = b->alloc(size);

	if (!p) {
		(*nulls)++;
		return;
	}
	h->stamp = tag | ++storm_seq;
	p[0] = h->stamp;
	p[1] = ~h->stamp;
	h->p = p;
}

static void storm_handler(int sig)
{
	int saved = errno;
	unsigned long n = atomic_load_explicit(&storm_handled, memory_order_relaxed);
	struct held *h = &handler_held[n % HANDLER_HELD];

	if (!held_check_free(sig_b, h))
		storm_bad++;
	held_alloc(sig_b, h, 64, 2ull << 60, &storm_handler_nulls);
	atomic_store_explicit(&storm_handled, n + 1, memory_order_relaxed);
	errno = saved;
}

/* Runs without the heap: only atomics, nanosleep and write(2). */
static void *storm_watchdog(void *arg)
{
	const struct bench_opts *o = arg;
	unsigned long last = 0;
	uint64_t last_change = now_ns();

	for (;;) {
		struct timespec ts = { 0, 50 * 1000000l };
		uint64_t now;
		unsigned long p;

		nanosleep(&ts, NULL);
		now = now_ns();
		p = atomic_load_explicit(&storm_progress, memory_order_relaxed);
		if (p != last) {
			last = p;
			last_change = now;
		} else if (now - last_change > 1000000000ull) {
			emit_metric("storm.survived", "bool", false, 0);
			emit_metric("storm.ms_to_failure", "ms", false,
				    (double)(last_change - storm_t0) / 1e6);
			emit_note("DEADLOCK: no progress for 1 s after %.0f ms, %lu signals handled",
				  (double)(last_change - storm_t0) / 1e6,
				  atomic_load(&storm_handled));
			_exit(3);
		}
		/* keep watching until the storm is over: the end is no safer */
		if (now - storm_t0 >= (uint64_t)(o->storm_s * 1e9))
			storm_stop = 1;
		if (storm_done)
			return NULL;
	}
}

static int run_storm(const struct backend *b, const struct bench_opts *o)
{
	struct sigaction sa = { .sa_handler = storm_handler, .sa_flags = SA_RESTART };
	static struct held held[MAIN_HELD];
	pthread_t watchdog;
	unsigned long ops = 0;
	double secs;
	int err = b->setup(256);

	if (err) {
		emit_note("setup failed: %s", strerror(-err));
		return 1;
	}
	sig_b = b;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	/*
	 * The kernel's hrtimer sends the storm straight to this thread: a
	 * sender thread would need CPU time that a busy machine does not give.
	 */
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGUSR1 };
	long period = 1000000000l / o->storm_hz;
	struct itimerspec its = { .it_interval = { 0, period }, .it_value = { 0, period } };
	timer_t timer;

	sev._sigev_un._tid = gettid();	/* glibc 2.36 has no sigev_notify_thread_id macro */
	if (timer_create(CLOCK_MONOTONIC, &sev, &timer)) {
		emit_note("timer_create: %s", strerror(errno));
		return 1;
	}
	storm_t0 = now_ns();
	pthread_create(&watchdog, NULL, storm_watchdog, (void *)o);
	timer_settime(timer, 0, &its, NULL);
	while (!storm_stop) {
		struct held *h = &held[rnd() % MAIN_HELD];

		if (!held_check_free(b, h) && ++storm_bad <= 3) {
			emit_note("double hand-out or corruption seen after %.1f ms",
				  (double)(now_ns() - storm_t0) / 1e6);
		}
		/* half of the requests hit the handler's size class head-on */
		uint64_t r = rnd();

		held_alloc(b, h, r & 1 ? 64 : 16 + (r >> 1) % 241, 1ull << 60, &storm_main_nulls);
		atomic_store_explicit(&storm_progress, ++ops, memory_order_relaxed);
	}
	timer_delete(timer);
	storm_done = 1;
	pthread_join(watchdog, NULL);
	signal(SIGUSR1, SIG_IGN);
	atomic_signal_fence(memory_order_seq_cst);	/* the handler's held[] too */
	secs = (double)(now_ns() - storm_t0) / 1e9;
	for (int i = 0; i < MAIN_HELD; i++)
		if (!held_check_free(b, &held[i]))
			storm_bad++;
	for (int i = 0; i < HANDLER_HELD; i++)
		if (!held_check_free(b, &handler_held[i]))
			storm_bad++;
	emit_metric("storm.survived", "bool", false, storm_bad == 0);
	emit_metric("storm.double_handouts", "count", true, (double)storm_bad);
	emit_metric("storm.signals/s", "Hz", false, (double)atomic_load(&storm_handled) / secs);
	emit_metric("storm.handler_null%", "%", true,
		    100.0 * (double)storm_handler_nulls / (double)(atomic_load(&storm_handled) + 1));
	emit_metric("storm.main_null%", "%", true, 100.0 * (double)storm_main_nulls / (double)(ops + 1));
	emit_metric("storm.main_Mops/s", "Mops/s", false, (double)ops / secs / 1e6);
	emit_metric("storm.seconds", "s", false, secs);
	b->teardown();
	return 0;
}

/* ---- free_rcu: frees that wait for a grace period, while allocating ---- */


static int run_free_rcu(const struct backend *b, const struct bench_opts *o)
{
	long n = o->free_rcu_objs, nulls = 0, base = rss_kib();
	struct rusage ru;
	uint64_t t0, t1, t2;
	int err = b->setup(64);

	if (err) {
		emit_note("setup failed: %s", strerror(-err));
		return 1;
	}
	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		void *p = b->alloc(64);

		/* every one of the n objects must go through the RCU free; as in
		 * xthread, count the object once and wait for the allocator */
		if (!p)
			nulls++;
		for (long spin = 0; !p; spin++) {
			if (spin > 1000)
				sched_yield();
			else
				cpu_relax();
			p = b->alloc(64);
		}
		*(volatile char *)p = 1;
		b->free_rcu(p);
	}
	t1 = now_ns();
	b->rcu_barrier();
	t2 = now_ns();
	getrusage(RUSAGE_SELF, &ru);
	emit_metric("free_rcu.Mobj/s", "Mobj/s", false, (double)n * 1e3 / (double)(t1 - t0));
	emit_metric("free_rcu.ns/obj", "ns", true, (double)(t1 - t0) / (double)n);
	emit_metric("free_rcu.quiesce_ms", "ms", true, (double)(t2 - t1) / 1e6);
	emit_metric("free_rcu.peak_rss_MiB", "MiB", true, (double)ru.ru_maxrss / 1024.0);
	emit_metric("free_rcu.rss_growth_MiB", "MiB", true,
		    (double)(ru.ru_maxrss - base) / 1024.0);
	emit_metric("free_rcu.null%", "%", true, 100.0 * (double)nulls / (double)n);
	b->teardown();
	return 0;
}

/* ---- which rows each scenario applies to ---- */

static bool signal_rows(const struct backend *b)
{
	return !b->static_lib && !b->loops_only && ((b->flags & BF_SIGNAL) || b->kind == BK_LIMIT);
}

static bool storm_rows(const struct backend *b)
{
	/* the limit has no re-entry guard by design: it would corrupt */
	return b->flags & BF_SIGNAL;
}

static bool xthread_rows(const struct backend *b)
{
	return b->flags & BF_CROSS_THREAD;
}

/* the statically linked rows only answer "what does the .so cost": pair and batch128 */
static bool tail_rows(const struct backend *b)
{
	return (b->flags & BF_FAST) && !b->static_lib && !b->loops_only;
}

static bool free_rcu_rows(const struct backend *b)
{
	return b->flags & BF_FREE_RCU;
}

const struct scenario scenarios[] = {
	{ "pair", "alloc+free of one object, ns per pair, by object size", "pair.64", true, true,
	  fast_rows, run_pair },
	{ "batch128", "128 allocs then 128 frees, ns per alloc+free, by object size",
	  "batch128.64", true, true, fast_rows, run_batch },
	{ "xthread", "producer allocates 64 B on vCPU 0, consumer frees on vCPU 1, through a ring; "
	  "null% = objects whose first allocation attempt returned NULL (then retried)",
	  "xthread.Mobj/s", true, false, xthread_rows, run_xthread },
	{ "tail", "per-call alloc latency, 10,000 live objects of random size 8..512 B "
	  "(fixed-size cache: 512 B), timer overhead included and printed", "tail.p99.99", true,
	  false, tail_rows, run_tail },
	{ "tail_all", "per-call alloc latency, 10,000 live objects of random size 8..4088 B "
	  "(fixed-size cache: 4088 B), timer overhead included and printed", "tail_all.p99.99",
	  true, false, tail_rows, run_tail_all },
	{ "signal", "alloc+free of 64 B inside a signal handler, ns per pair", "signal.pair", true,
	  false, signal_rows, run_signal },
	{ "free_rcu", "alloc 64 B + RCU-deferred free, objects/s; quiesce = rcu barrier after the loop",
	  "free_rcu.Mobj/s", true, false, free_rcu_rows, run_free_rcu },
	{ "storm", "signal storm whose handler allocates and frees, main thread churning; "
	  "stamps detect double hand-out", NULL, false, false, storm_rows, run_storm },
	HTAB_MEM_SCENARIOS,
	{ "owns", "bpfmem_owns() ns per query over 4096 live 64 B objects: hit, another "
	  "allocator's object, unmapped; table_hit = binary search of the live objects",
	  "owns.hit", true, false, owns_rows, run_owns },
	{ "footprint", "RSS bytes per idle allocator (64 allocators, 2 threads used each once; "
	  "init_B: right after init; objects_B: of the objects its caches hold) and "
	  "ns of a virtual CPU's first allocation, by BPFMEM_NR_CPUS", NULL, true, false,
	  footprint_rows, run_footprint },
};

const int nr_scenarios = sizeof(scenarios) / sizeof(scenarios[0]);
