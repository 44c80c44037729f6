/* SPDX-License-Identifier: MIT */
/*
 * quickstart: libbpfmem in one run.  One thread per real CPU, pinned and owning a virtual CPU,
 * allocates from every size class, frees what its neighbour allocated, is interrupted by signals
 * whose handler allocates and frees, and frees under RCU; then the per-class statistics.
 */
#define _GNU_SOURCE
#include <bpfmem.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NR_CLASSES	11	/* size classes of an any-size allocator */
#define OBJS		128	/* objects per class per thread */
#define SIGNAL_ROUNDS	200
#define SIGNAL_WAIT_S	60	/* a handler that has not run by then never will */

/* What the fixed-size cache holds: a typical BPF map element. */
struct flow {
	unsigned long key[4];
	unsigned long packets, bytes;
	void *next;
	unsigned int flags;
};

struct worker {
	pthread_t tid;
	int id;
	int vcpu;			/* the virtual CPU it attaches to */
	int real_cpu;			/* where BPFMEM_ATTACH_PIN puts it, -1: not pinned */
	int attach_err;
	void *objs[NR_CLASSES][OBJS];
	struct flow *flows[OBJS];
	unsigned long retries;		/* allocations that found the cache empty */
	unsigned long reused_too_early;	/* RCU-freed objects handed out inside the section */
	/* written by the thread's own signal handler, read by main after the join ... */
	unsigned long handler_allocs, handler_nulls;
	/* ... except this one, which main polls */
	_Atomic unsigned long handled;
};

static struct bpf_mem_alloc any;	/* any-size: 11 classes */
static struct bpf_mem_alloc fixed;	/* fixed-size: struct flow */
static size_t class_size[NR_CLASSES];	/* request size that lands in class idx */
static struct worker *workers;
static int nr_workers;
static pthread_barrier_t phase;
static atomic_bool stop_churn;
static atomic_int warnings;
static __thread struct worker *self;

static void on_warning(const char *msg, void *arg)
{
	(void)arg;
	atomic_fetch_add(&warnings, 1);
	fprintf(stderr, "libbpfmem warning: %s\n", msg);
}

static void die(const char *what)
{
	fprintf(stderr, "quickstart: FAILED: %s\n", what);
	exit(1);
}

/* Outside a signal handler an empty cache only means the refill thread has not run yet. */
static void *alloc_retry(struct worker *w, int idx)
{
	void *p;

	while (!(p = idx < 0 ? bpf_mem_cache_alloc(&fixed) : bpf_mem_alloc(&any, class_size[idx]))) {
		w->retries++;
		sched_yield();
	}
	return p;
}

static void fill(void *p, size_t size, int id)
{
	memset(p, 'A' + id % 26, size);
}

static bool intact(const void *p, size_t size, int id)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < size; i++)
		if (c[i] != 'A' + id % 26)
			return false;
	return true;
}

/*
 * May interrupt the thread anywhere, also inside bpf_mem_alloc on the very cache it uses: then
 * that allocation returns NULL (the `active` guard, as for an NMI in the kernel).  A free never
 * fails.  Only async-signal-safe calls here.
 */
static void on_signal(int sig)
{
	struct worker *w = self;
	int saved_errno = errno;

	(void)sig;
	for (int idx = 0; idx < NR_CLASSES; idx++) {
		void *p = bpf_mem_alloc(&any, class_size[idx]);

		w->handler_allocs++;
		if (!p) {
			w->handler_nulls++;
			continue;
		}
		memset(p, 0x5a, class_size[idx]);
		bpf_mem_free(&any, p);
	}
	struct flow *f = bpf_mem_cache_alloc(&fixed);

	w->handler_allocs++;
	if (f) {
		f->packets = 1;
		bpf_mem_cache_free(&fixed, f);
	} else {
		w->handler_nulls++;
	}
	atomic_fetch_add_explicit(&w->handled, 1, memory_order_release);
	errno = saved_errno;
}

static void allocate_all(struct worker *w)
{
	for (int idx = 0; idx < NR_CLASSES; idx++) {
		for (int i = 0; i < OBJS; i++) {
			w->objs[idx][i] = alloc_retry(w, idx);
			fill(w->objs[idx][i], class_size[idx], w->id);
		}
	}
	for (int i = 0; i < OBJS; i++) {
		w->flows[i] = alloc_retry(w, -1);
		fill(w->flows[i], sizeof(struct flow), w->id);
	}
}

/* Frees the neighbour's objects on this thread's virtual CPU: half plain, half after RCU. */
static bool free_neighbours(struct worker *w)
{
	struct worker *n = &workers[(w->id + 1) % nr_workers];
	bool ok = true;

	for (int idx = 0; idx < NR_CLASSES; idx++) {
		for (int i = 0; i < OBJS; i++) {
			ok &= intact(n->objs[idx][i], class_size[idx], n->id);
			if (i % 2)
				bpf_mem_free_rcu(&any, n->objs[idx][i]);
			else
				bpf_mem_free(&any, n->objs[idx][i]);
		}
	}
	for (int i = 0; i < OBJS; i++) {
		ok &= intact(n->flows[i], sizeof(struct flow), n->id);
		if (i % 2)
			bpf_mem_cache_free_rcu(&fixed, n->flows[i]);
		else
			bpf_mem_cache_free(&fixed, n->flows[i]);
	}
	return ok;
}

static void churn_until_stopped(void)
{
	for (unsigned long iter = 1; !atomic_load_explicit(&stop_churn, memory_order_relaxed); iter++) {
		for (int idx = 0; idx < NR_CLASSES; idx++) {
			void *p = bpf_mem_alloc(&any, class_size[idx]);

			if (p)
				bpf_mem_free(&any, p);
		}
		/* a syscall now and then: sanitizer runtimes deliver deferred signals there */
		if (iter % 16 == 0)
			sched_yield();
	}
}

/*
 * Inside an RCU read-side section, an object freed with bpf_mem_free_rcu() cannot come back
 * from the allocator: allocate twice the high watermark from its class and look for it.
 */
static void free_rcu_inside_reader(struct worker *w)
{
	for (int idx = 0; idx < NR_CLASSES; idx++) {
		struct bpfmem_cache_stats st = { .sz = sizeof(st) };
		void **got;
		int n;

		if (bpfmem_cache_stats(&any, idx, &st))
			die("bpfmem_cache_stats");
		n = 2 * st.high_watermark;
		got = calloc(n, sizeof(*got));
		if (!got)
			die("out of memory");

		bpfmem_rcu_read_lock();
		void *victim = alloc_retry(w, idx);

		fill(victim, class_size[idx], w->id);
		bpf_mem_free_rcu(&any, victim);
		for (int i = 0; i < n; i++) {
			got[i] = alloc_retry(w, idx);
			if (got[i] == victim)
				w->reused_too_early++;
		}
		/* type-stable: still readable, and nobody wrote to it */
		if (!intact(victim, class_size[idx], w->id))
			w->reused_too_early++;
		for (int i = 0; i < n; i++)
			bpf_mem_free(&any, got[i]);
		bpfmem_rcu_read_unlock();
		free(got);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	self = w;
	if (w->vcpu < 0)
		goto attached;	/* no virtual CPU for it: implicit attach, maybe the shared CPU */
	w->attach_err = bpfmem_thread_attach(w->vcpu, BPFMEM_ATTACH_PIN);
	if (w->attach_err && w->attach_err != -EBUSY && w->attach_err != -EINVAL) {
		/* the CPU is outside this process's allowed set: run unpinned */
		w->real_cpu = -1;
		w->attach_err = bpfmem_thread_attach(w->vcpu, 0);
	}
	if (w->attach_err)
		die("bpfmem_thread_attach");
attached:
	allocate_all(w);
	pthread_barrier_wait(&phase);		/* 1: everything allocated */
	if (!free_neighbours(w))
		die("an object changed while its owner held it");
	pthread_barrier_wait(&phase);		/* 2: cross-thread frees done */
	churn_until_stopped();
	pthread_barrier_wait(&phase);		/* 3: signals done */
	free_rcu_inside_reader(w);
	return NULL;
}

/* The real CPUs this process may run on: one worker each, at least two. */
static void plan_workers(void)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	int allowed[CPU_SETSIZE], n = 0;
	cpu_set_t set;

	if (online < 1)
		online = 1;
	if (sched_getaffinity(0, sizeof(set), &set))
		die("sched_getaffinity");
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set))
			allowed[n++] = c;
	nr_workers = n < 2 ? 2 : n;
	workers = calloc(nr_workers, sizeof(*workers));
	if (!workers)
		die("out of memory");
	for (int i = 0; i < nr_workers; i++) {
		struct worker *w = &workers[i];

		w->id = i;
		/* pinning puts virtual CPU v on real CPU v % online; a lone CPU gets a
		 * second thread through the virtual CPU one "lap" further */
		w->vcpu = i < n ? allowed[i] : allowed[0] + (int)online * i;
		w->real_cpu = w->vcpu % (int)online;
		if (w->vcpu >= bpfmem_nr_cpus())
			w->vcpu = w->real_cpu = -1;	/* BPFMEM_NR_CPUS set very low */
	}
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) + (t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void send_signals(void)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned long round = 1; round <= SIGNAL_ROUNDS; round++) {
		for (int i = 0; i < nr_workers; i++)
			pthread_kill(workers[i].tid, SIGUSR1);
		/* standard signals do not queue: wait for each before the next */
		for (int i = 0; i < nr_workers; i++) {
			while (atomic_load_explicit(&workers[i].handled, memory_order_acquire) < round) {
				if (seconds_since(&t0) > SIGNAL_WAIT_S)
					die("a signal handler did not run");
				sched_yield();
			}
		}
	}
	atomic_store(&stop_churn, true);
}

static void print_stats_row(const char *label, const struct bpfmem_cache_stats *st)
{
	printf("  %5s %5u %4d %5d %6d %5u %7lu %15lu %14lu %8lu %6lu\n", label, st->unit_size,
	       st->low_watermark, st->high_watermark, st->batch, st->cpus_used, st->cached,
	       st->backend_allocs, st->backend_frees, st->refills, st->trims);
}

static void print_stats_header(void)
{
	printf("  %5s %5s %4s %5s %6s %5s %7s %15s %14s %8s %6s\n", "class", "unit", "low", "high",
	       "batch", "cpus", "cached", "backend allocs", "backend frees", "refills", "trims");
}

static void print_stats(void)
{
	struct bpfmem_cache_stats st = { .sz = sizeof(st) };
	char label[16];

	printf("\nany-size allocator, per size class, summed over all virtual CPUs (classes in the "
	       "kernel's order;\nunit includes the 8-byte header; cpus: virtual CPUs with cached "
	       "objects, the shared one included):\n");
	print_stats_header();
	for (int idx = 0; idx < bpfmem_nr_size_classes(&any); idx++) {
		if (bpfmem_cache_stats(&any, idx, &st))
			die("bpfmem_cache_stats");
		snprintf(label, sizeof(label), "%d", idx);
		print_stats_row(label, &st);
	}
	printf("\nfixed-size cache of struct flow (%zu bytes):\n", sizeof(struct flow));
	print_stats_header();
	if (bpfmem_cache_stats(&fixed, 0, &st))
		die("bpfmem_cache_stats");
	print_stats_row("-", &st);
}

int main(void)
{
	unsigned long retries = 0, handled = 0, h_allocs = 0, h_nulls = 0, reused = 0;
	struct sigaction sa = { .sa_handler = on_signal };
	struct bpfmem_cache_stats st = { .sz = sizeof(st) };

	setvbuf(stdout, NULL, _IOLBF, 0);
	bpfmem_set_warn_handler(on_warning, NULL);
	if (bpf_mem_alloc_init(&any, 0, false) || bpf_mem_alloc_init(&fixed, sizeof(struct flow), false))
		die("bpf_mem_alloc_init");
	if (bpfmem_nr_size_classes(&any) != NR_CLASSES)
		die("bpfmem_nr_size_classes");
	for (int idx = 0; idx < NR_CLASSES; idx++) {
		if (bpfmem_cache_stats(&any, idx, &st))
			die("bpfmem_cache_stats");
		class_size[idx] = st.unit_size - 8;	/* the largest request of the class */
	}
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGUSR1, &sa, NULL))
		die("sigaction");

	plan_workers();
	printf("libbpfmem quickstart: %d virtual CPUs, %ld real CPUs online, %d threads\n",
	       bpfmem_nr_cpus(), sysconf(_SC_NPROCESSORS_ONLN), nr_workers);
	if (pthread_barrier_init(&phase, NULL, nr_workers + 1))
		die("pthread_barrier_init");
	for (int i = 0; i < nr_workers; i++)
		if (pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]))
			die("pthread_create");

	pthread_barrier_wait(&phase);
	for (int i = 0; i < nr_workers; i++) {
		if (workers[i].vcpu < 0) {
			printf("  thread %d: no virtual CPU to spare: attached on first use (or shared "
			       "CPU)\n", i);
			continue;
		}
		printf("  thread %d: virtual CPU %d, ", i, workers[i].vcpu);
		if (workers[i].real_cpu >= 0)
			printf("pinned to real CPU %d\n", workers[i].real_cpu);
		else
			printf("not pinned (CPU outside the allowed set)\n");
	}
	printf("1. each thread allocated %d objects from each of the %d size classes and %d from "
	       "the\n   fixed-size cache\n", OBJS, NR_CLASSES, OBJS);

	pthread_barrier_wait(&phase);
	printf("2. each thread freed its neighbour's %d objects (cross-thread), contents intact: "
	       "half with\n   bpf_mem_free/bpf_mem_cache_free, half with "
	       "bpf_mem_free_rcu/bpf_mem_cache_free_rcu\n", (NR_CLASSES + 1) * OBJS);

	send_signals();
	pthread_barrier_wait(&phase);
	for (int i = 0; i < nr_workers; i++) {
		pthread_join(workers[i].tid, NULL);
		retries += workers[i].retries;
		handled += atomic_load(&workers[i].handled);
		h_allocs += workers[i].handler_allocs;
		h_nulls += workers[i].handler_nulls;
		reused += workers[i].reused_too_early;
	}
	printf("3. %d rounds of SIGUSR1 to every thread while it allocated and freed: %lu handler "
	       "runs,\n   %lu allocations in handlers, %lu returned NULL (the handler interrupted "
	       "the same cache,\n   or it was empty); every free succeeded\n", SIGNAL_ROUNDS,
	       handled, h_allocs, h_nulls);
	printf("4. inside bpfmem_rcu_read_lock(), each thread freed one object per class with "
	       "bpf_mem_free_rcu()\n   and allocated 2 x high watermark more: handed out again "
	       "too early: %lu\n", reused);
	if (reused)
		die("an object freed with bpf_mem_free_rcu() came back inside the read-side section");

	bpfmem_rcu_barrier();
	printf("5. bpfmem_rcu_barrier(): every RCU callback queued so far has run\n");
	printf("   (outside handlers, %lu allocations found their cache empty and retried while "
	       "the refill\n   thread filled it)\n", retries);
	print_stats();

	bpf_mem_alloc_destroy(&any);
	bpf_mem_alloc_destroy(&fixed);
	printf("\nboth allocators destroyed; library warnings: %d\n", atomic_load(&warnings));
	return atomic_load(&warnings) ? 1 : 0;
}
