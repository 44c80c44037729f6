/* SPDX-License-Identifier: MIT */
/*
 * The kernel's `bench htab-mem` (tools/testing/selftests/bpf) on examples/htab: a map with
 * 4-byte keys and values of 8 or 4096 bytes, producers that overwrite their keys, add and
 * delete them in batches, or add on one thread what a partner deletes on another.  Rows:
 * the map on libbpfmem, on malloc + one liburcu call_rcu per element (glibc, or jemalloc /
 * tcmalloc preloaded), and preallocated.  Reports the per-producer op rate and the RSS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <urcu/urcu-bp.h>

#include <bpfmem.h>
#include "bench.h"
#include "htab.h"

#define OP_BATCH	64	/* map operations per op, as the kernel's bpf_loop */
#define MAX_PRODUCERS	8
#define RSS_PERIOD_NS	10000000	/* one RSS sample every 10 ms */
#define MAX_RSS_SAMPLES	4096

enum use_case { OVERWRITE, BATCH_ADD_BATCH_DEL, ADD_DEL_ON_DIFF_CPU };

struct producer {
	_Atomic long ops;		/* batches of OP_BATCH map operations */
	long updates, enomem;		/* updates, and those whose first try found no memory */
	long errors;			/* anything but 0 and -ENOMEM: the scenario is broken */
	int id, pin_err;
} __attribute__((aligned(64)));

struct pair {
	pthread_barrier_t step;		/* adder and deleter take turns */
	atomic_bool stop;		/* set by the adder, seen by the deleter after a turn */
} __attribute__((aligned(64)));

static struct {
	struct htab *map;
	enum use_case uc;
	uint32_t value_size;
	int producers;
	atomic_bool stop;
	pthread_barrier_t start;
	struct producer prod[MAX_PRODUCERS];
	struct pair pairs[MAX_PRODUCERS / 2];
	unsigned char value[4096];	/* zeroed, as the kernel's zeroed_value */
} hm;

/* ---- the malloc + call_rcu row: what a runtime writes without the library ---- */

struct rcu_elem {
	struct rcu_head rh;
	max_align_t data[];
};

static void *rcu_elem_alloc(void *ctx, size_t size)
{
	struct rcu_elem *e = malloc(sizeof(*e) + size);

	return e ? e->data : NULL;
}

static void rcu_elem_free_cb(struct rcu_head *rh)
{
	free(caa_container_of(rh, struct rcu_elem, rh));
}

static void rcu_elem_free(void *ctx, void *p)
{
	struct rcu_elem *e = (struct rcu_elem *)((char *)p - offsetof(struct rcu_elem, data));

	urcu_bp_call_rcu(&e->rh, rcu_elem_free_cb);
}

static const struct htab_elem_ops malloc_call_rcu = {
	.alloc = rcu_elem_alloc, .free = rcu_elem_free,
};

/* ---- producers ---- */


/* An update that outran the allocator's refill counts once and is retried: every op
 * does its 64 operations, so the rate includes the wait. */
static void update(struct producer *p, uint32_t key, uint64_t flags)
{
	int err = htab_update(hm.map, &key, hm.value, flags);

	p->updates++;
	if (err == -ENOMEM) {
		p->enomem++;
		for (long spin = 0; (err = htab_update(hm.map, &key, hm.value, flags)) == -ENOMEM;
		     spin++) {
			if (spin > 100)
				sched_yield();
			else
				cpu_relax();
		}
	}
	if (err)
		p->errors++;
}

static void delete(struct producer *p, uint32_t key)
{
	if (htab_delete(hm.map, &key))
		p->errors++;
}

/* Each producer owns the keys id, id + step, id + 2 * step, ...: the kernel's layout. */
static void add_batch(struct producer *p, uint32_t from, uint32_t step, uint64_t flags)
{
	for (uint32_t i = 0; i < OP_BATCH; i++)
		update(p, from + i * step, flags);
}

static void del_batch(struct producer *p, uint32_t from, uint32_t step)
{
	for (uint32_t i = 0; i < OP_BATCH; i++)
		delete(p, from + i * step);
}

static void add_del_pair(struct producer *p)
{
	struct pair *pr = &hm.pairs[p->id / 2];
	uint32_t from = (uint32_t)p->id / 2, step = (uint32_t)hm.producers / 2;

	if (p->id % 2 == 0) {
		for (;;) {
			if (atomic_load_explicit(&hm.stop, memory_order_relaxed)) {
				atomic_store(&pr->stop, true);
				pthread_barrier_wait(&pr->step);
				return;
			}
			add_batch(p, from, step, BPF_NOEXIST);
			atomic_fetch_add_explicit(&p->ops, 1, memory_order_relaxed);
			pthread_barrier_wait(&pr->step);	/* the deleter's turn */
			pthread_barrier_wait(&pr->step);	/* done */
		}
	}
	for (;;) {
		pthread_barrier_wait(&pr->step);
		if (atomic_load(&pr->stop))
			return;
		del_batch(p, from, step);
		atomic_fetch_add_explicit(&p->ops, 1, memory_order_relaxed);
		pthread_barrier_wait(&pr->step);
	}
}

static void *producer(void *arg)
{
	struct producer *p = arg;
	uint32_t step = (uint32_t)hm.producers;

	p->pin_err = pin_thread_cpu(p->id);
	pthread_barrier_wait(&hm.start);
	switch (hm.uc) {
	case OVERWRITE:
		while (!atomic_load_explicit(&hm.stop, memory_order_relaxed)) {
			add_batch(p, (uint32_t)p->id, step, BPF_ANY);
			atomic_fetch_add_explicit(&p->ops, 1, memory_order_relaxed);
		}
		break;
	case BATCH_ADD_BATCH_DEL:
		while (!atomic_load_explicit(&hm.stop, memory_order_relaxed)) {
			add_batch(p, (uint32_t)p->id, step, BPF_ANY);
			del_batch(p, (uint32_t)p->id, step);
			atomic_fetch_add_explicit(&p->ops, 2, memory_order_relaxed);
		}
		break;
	case ADD_DEL_ON_DIFF_CPU:
		add_del_pair(p);
		break;
	}
	return NULL;
}

static int nr_producers(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	/* add_del_on_diff_cpu needs pairs; one producer per CPU, as the kernel's -p */
	cpus = cpus < 2 ? 2 : cpus > MAX_PRODUCERS ? MAX_PRODUCERS : cpus;
	return (int)(cpus & ~1l);
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

static void metric(const char *scen, const char *what, const char *unit, bool lower, double v)
{
	char name[96];

	snprintf(name, sizeof(name), "%s.%s", scen, what);
	emit_metric(name, unit, lower, v);
}

static int run_htab_mem(const struct backend *b, const struct bench_opts *o, const char *scen,
			enum use_case uc, uint32_t value_size)
{
	struct htab_attr attr = { .key_size = 4, .value_size = value_size };
	static long rss[MAX_RSS_SAMPLES];
	pthread_t t[MAX_PRODUCERS];
	double run_s = o->quick ? 0.15 : 2.0, warm_s = run_s / 4;
	long ops0[MAX_PRODUCERS], base = rss_kib(), updates = 0, enomem = 0, errors = 0;
	int nr_rss = 0, err;
	uint64_t t0, t1, tw = 0;
	struct rusage ru;

	hm.uc = uc;
	hm.value_size = value_size;
	hm.producers = nr_producers();
	/* the kernel's size: every producer's 64 keys fit with room to spare */
	attr.max_entries = 64u * (uint32_t)hm.producers > 8192 ? 64u * (uint32_t)hm.producers : 8192;
	if (b->flags & BF_HTAB_PREALLOC) {
		attr.map_flags = 0;
	} else {
		attr.map_flags = BPF_F_NO_PREALLOC;
		attr.elem_ops = b->flags & BF_MALLOC ? &malloc_call_rcu : NULL;
	}
	err = htab_create(&attr, &hm.map);
	if (err) {
		emit_note("htab_create: %s", strerror(-err));
		return 1;
	}
	atomic_store(&hm.stop, false);
	pthread_barrier_init(&hm.start, NULL, (unsigned int)hm.producers + 1);
	for (int i = 0; i < hm.producers / 2; i++) {
		pthread_barrier_init(&hm.pairs[i].step, NULL, 2);
		atomic_store(&hm.pairs[i].stop, false);
	}
	for (int i = 0; i < hm.producers; i++) {
		memset(&hm.prod[i], 0, sizeof(hm.prod[i]));
		hm.prod[i].id = i;
		pthread_create(&t[i], NULL, producer, &hm.prod[i]);
	}
	pthread_barrier_wait(&hm.start);
	t0 = now_ns();
	/* the RSS every 10 ms after the warm-up: the kernel samples memory.current */
	for (;;) {
		struct timespec ts = { 0, RSS_PERIOD_NS };
		uint64_t now;

		nanosleep(&ts, NULL);
		now = now_ns();
		if (!tw && now - t0 >= (uint64_t)(warm_s * 1e9)) {
			tw = now;
			for (int i = 0; i < hm.producers; i++)
				ops0[i] = atomic_load(&hm.prod[i].ops);
		}
		if (tw && nr_rss < MAX_RSS_SAMPLES)
			rss[nr_rss++] = rss_kib();
		if (now - t0 >= (uint64_t)(run_s * 1e9))
			break;
	}
	t1 = now_ns();
	long ops = 0;

	for (int i = 0; i < hm.producers; i++)
		ops += atomic_load(&hm.prod[i].ops) - ops0[i];
	atomic_store(&hm.stop, true);
	for (int i = 0; i < hm.producers; i++) {
		pthread_join(t[i], NULL);
		updates += hm.prod[i].updates;
		enomem += hm.prod[i].enomem;
		errors += hm.prod[i].errors;
		if (hm.prod[i].pin_err)
			emit_note("pinning producer %d failed: %d", i, hm.prod[i].pin_err);
	}
	getrusage(RUSAGE_SELF, &ru);
	htab_destroy(hm.map);
	if (b->flags & BF_MALLOC)
		urcu_bp_barrier();	/* the call_rcu callbacks still queued */
	for (int i = 0; i < hm.producers / 2; i++)
		pthread_barrier_destroy(&hm.pairs[i].step);
	pthread_barrier_destroy(&hm.start);
	if (errors) {
		emit_note("%ld map operations failed with an error other than -ENOMEM", errors);
		return 1;
	}

	double avg = 0, late = 0, mid = 0;
	int third = nr_rss / 3;

	for (int i = 0; i < nr_rss; i++)
		avg += (double)rss[i] / (double)nr_rss;
	/* bounded memory: the last third of the run holds no more than the middle one */
	for (int i = 0; i < third; i++) {
		mid += (double)rss[third + i] / (double)third;
		late += (double)rss[2 * third + i] / (double)third;
	}
	qsort(rss, (size_t)nr_rss, sizeof(rss[0]), cmp_long);
	metric(scen, "kop/s", "kop/s", false,
	       (double)ops / hm.producers / ((double)(t1 - tw) / 1e9) / 1e3);
	metric(scen, "avg_MiB", "MiB", true, avg / 1024.0);
	metric(scen, "peak_MiB", "MiB", true, (double)ru.ru_maxrss / 1024.0);
	metric(scen, "base_MiB", "MiB", true, (double)base / 1024.0);
	/* the question is whether memory keeps growing: a shrink reads as 0 (the tables
	 * print negative numbers as "-", no result) */
	metric(scen, "late_growth_MiB", "MiB", true, late > mid ? (late - mid) / 1024.0 : 0);
	metric(scen, "enomem%", "%", true, updates ? 100.0 * (double)enomem / (double)updates : 0);
	return 0;
}

bool htab_mem_rows(const struct backend *b)
{
	/* libbpfmem's fixed-size cache is what the map uses; of the malloc peers, the
	 * system's and the two the kernel's comparison would name (mimalloc adds time,
	 * not a different answer: run it with --backends) */
	if (b->flags & BF_HTAB_PREALLOC)
		return true;
	if (b->kind == BK_BPFMEM)
		return !b->static_lib && !strcmp(b->name, "bpfmem-cache");
	return (b->flags & BF_MALLOC) && strcmp(b->name, "mimalloc");
}

/* One scenario per use case and value size: each in its own child, so that the peak RSS
 * of one does not carry into the next. */
#define HTAB_MEM_RUN(uc_name, uc, size)                                                 \
	int run_htab_##uc_name##_##size(const struct backend *b, const struct bench_opts *o) \
	{                                                                               \
		return run_htab_mem(b, o, "htab-" #uc_name "-" #size, uc, size);         \
	}
HTAB_MEM_RUN(overwrite, OVERWRITE, 8)
HTAB_MEM_RUN(overwrite, OVERWRITE, 4096)
HTAB_MEM_RUN(batch_add_batch_del, BATCH_ADD_BATCH_DEL, 8)
HTAB_MEM_RUN(batch_add_batch_del, BATCH_ADD_BATCH_DEL, 4096)
HTAB_MEM_RUN(add_del_on_diff_cpu, ADD_DEL_ON_DIFF_CPU, 8)
HTAB_MEM_RUN(add_del_on_diff_cpu, ADD_DEL_ON_DIFF_CPU, 4096)
