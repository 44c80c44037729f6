/* SPDX-License-Identifier: MIT */
/*
 * The footprint scenario: resident bytes per idle allocator against the
 * number of virtual CPUs (right after init, and after use, with the bytes
 * of the objects its caches then hold), and the cost of a virtual CPU's
 * first allocation.
 * BPFMEM_NR_CPUS is read once at library load, so each CPU count runs in a
 * probe process of its own (this binary, re-executed with --footprint-probe).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpfmem.h>
#include "bench.h"

#define NR_ALLOCATORS	64	/* measured together: RSS moves in pages */
#define USER_THREADS	2
#define MAX_FIRST	32	/* first-allocation samples per probe */

static const int cpu_counts[] = { 8, 64, 1024 };

static struct bpf_mem_alloc warmup, mas[NR_ALLOCATORS];
static int user_cpu[USER_THREADS];	/* each user's virtual CPU, -1: none */
static bool fixed;
static pthread_barrier_t barrier;

static void *alloc_from(struct bpf_mem_alloc *ma)
{
	return fixed ? bpf_mem_cache_alloc(ma) : bpf_mem_alloc(ma, 64);
}

static void free_to(struct bpf_mem_alloc *ma, void *p)
{
	if (fixed)
		bpf_mem_cache_free(ma, p);
	else
		bpf_mem_free(ma, p);
}


/* Attaches (first use of the warm-up allocator, so its own first touches
 * are not counted), waits for the allocators, uses each once. */
static void *user_thread(void *arg)
{
	free_to(&warmup, alloc_from(&warmup));
	*(int *)arg = bpfmem_current_cpu();
	pthread_barrier_wait(&barrier);		/* main measures, then inits */
	pthread_barrier_wait(&barrier);
	for (int i = 0; i < NR_ALLOCATORS; i++)
		free_to(&mas[i], alloc_from(&mas[i]));
	pthread_barrier_wait(&barrier);		/* main measures again */
	pthread_barrier_wait(&barrier);
	return NULL;
}

struct first_sample {
	int cpu;
	uint64_t first_ns, next_ns;
};

/* A fresh thread: attach through the warm-up allocator, then time the
 * first allocation from mas[0] on this virtual CPU, and the one after. */
static void *first_alloc_thread(void *arg)
{
	struct first_sample *s = arg;
	uint64_t t0, t1, t2;
	void *p, *q;

	free_to(&warmup, alloc_from(&warmup));
	t0 = now_ns();
	p = alloc_from(&mas[0]);
	t1 = now_ns();
	q = alloc_from(&mas[0]);
	t2 = now_ns();
	s->cpu = bpfmem_current_cpu();
	s->first_ns = t1 - t0;
	s->next_ns = t2 - t1;
	free_to(&mas[0], p);
	free_to(&mas[0], q);
	return NULL;
}

/* Bytes of the objects the backend handed to `ma`'s caches and did not get
 * back: what the watermarks keep, apart from the caches themselves. */
static double object_bytes(const struct bpf_mem_alloc *ma)
{
	double bytes = 0;

	for (int i = 0; i < bpfmem_nr_size_classes(ma); i++) {
		struct bpfmem_cache_stats st = { .sz = sizeof(st) };

		if (!bpfmem_cache_stats(ma, i, &st))
			bytes += (double)(st.backend_allocs - st.backend_frees) * st.unit_size;
	}
	return bytes;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int footprint_probe(const char *kind, int ncpus)
{
	pthread_t th[USER_THREADS];
	uint64_t first[MAX_FIRST], next[MAX_FIRST];
	bool *used = calloc((size_t)ncpus + 1, 1);
	int nfirst = 0;
	long before, inited, after;
	double objects = 0;
	char name[64];

	fixed = !strcmp(kind, "fixed");
	if (!used || bpfmem_nr_cpus() != ncpus || bpf_mem_alloc_init(&warmup, fixed ? 64 : 0, false)) {
		emit_note("footprint probe: cannot set up %d virtual CPUs", ncpus);
		return 1;
	}
	pthread_barrier_init(&barrier, NULL, USER_THREADS + 1);
	for (int i = 0; i < USER_THREADS; i++)
		pthread_create(&th[i], NULL, user_thread, &user_cpu[i]);
	pthread_barrier_wait(&barrier);
	bpfmem_rcu_barrier();	/* the warm-up's refills have landed */
	before = rss_kib() * 1024;
	for (int i = 0; i < NR_ALLOCATORS; i++)
		if (bpf_mem_alloc_init(&mas[i], fixed ? 64 : 0, false))
			return 1;
	inited = rss_kib() * 1024;	/* the users are attached: set up, prefilled */
	pthread_barrier_wait(&barrier);
	pthread_barrier_wait(&barrier);
	bpfmem_rcu_barrier();	/* and those the users raised */
	after = rss_kib() * 1024;
	for (int i = 0; i < USER_THREADS; i++)
		used[user_cpu[i] < 0 ? ncpus : user_cpu[i]] = true;
	pthread_barrier_wait(&barrier);
	for (int i = 0; i < USER_THREADS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NR_ALLOCATORS; i++)
		objects += object_bytes(&mas[i]);
	snprintf(name, sizeof(name), "footprint.%dcpu.B", ncpus);
	emit_metric(name, "B", true, (double)(after - before) / NR_ALLOCATORS);
	snprintf(name, sizeof(name), "footprint.%dcpu.init_B", ncpus);
	emit_metric(name, "B", true, (double)(inited - before) / NR_ALLOCATORS);
	snprintf(name, sizeof(name), "footprint.%dcpu.objects_B", ncpus);
	emit_metric(name, "B", true, objects / NR_ALLOCATORS);

	/* Threads come one at a time, so each takes a free virtual CPU; only
	 * CPUs mas[0] has not seen yet count. */
	for (int i = 0; i < MAX_FIRST && i < ncpus; i++) {
		struct first_sample s;
		pthread_t t;

		pthread_create(&t, NULL, first_alloc_thread, &s);
		pthread_join(t, NULL);
		if (s.cpu < 0 || used[s.cpu])
			continue;
		used[s.cpu] = true;
		first[nfirst] = s.first_ns;
		next[nfirst++] = s.next_ns;
	}
	if (nfirst) {
		qsort(first, (size_t)nfirst, sizeof(first[0]), cmp_u64);
		qsort(next, (size_t)nfirst, sizeof(next[0]), cmp_u64);
		snprintf(name, sizeof(name), "footprint.%dcpu.first_ns", ncpus);
		emit_metric(name, "ns", true, (double)first[nfirst / 2]);
		snprintf(name, sizeof(name), "footprint.%dcpu.next_ns", ncpus);
		emit_metric(name, "ns", true, (double)next[nfirst / 2]);
	}
	free(used);
	return 0;
}

int run_footprint(const struct backend *b, const struct bench_opts *o)
{
	(void)o;
	for (size_t i = 0; i < sizeof(cpu_counts) / sizeof(cpu_counts[0]); i++) {
		char n[16];
		int status;
		pid_t pid;

		snprintf(n, sizeof(n), "%d", cpu_counts[i]);
		fflush(NULL);
		pid = fork();
		if (pid < 0)
			return 1;
		if (!pid) {
			char *argv[] = { (char *)"bpfmem-bench", (char *)"--footprint-probe",
					 (char *)(strcmp(b->name, "bpfmem-cache") ? "any" : "fixed"),
					 n, NULL };

			setenv("BPFMEM_NR_CPUS", n, 1);
			execv("/proc/self/exe", argv);
			_exit(127);
		}
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
			emit_note("footprint probe with %s virtual CPUs failed (status 0x%x)", n, status);
			return 1;
		}
	}
	return 0;
}

bool footprint_rows(const struct backend *b)
{
	return !strcmp(b->name, "bpfmem-cache") || !strcmp(b->name, "bpfmem-any");
}
