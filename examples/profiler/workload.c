/* SPDX-License-Identifier: MIT */
/*
 * profiler: profiles a workload whose threads spend their CPU time in two functions in a
 * 3:1 ratio, then prints the top functions.  --check exits non-zero unless the top two are
 * workload_heavy and workload_light, in that order.  The run ends after a number of samples,
 * not after a time, so a loaded machine only makes it slower.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "profiler.h"

#define UNIT		100000	/* iterations of the light function: ~0.1 ms */
#define GIVE_UP_S	240	/* no sampling at all would otherwise wait forever */

static atomic_bool stop;

/* Identical loop bodies, so that CPU time follows the iteration counts. */
static inline __attribute__((always_inline)) uint64_t spin(uint64_t n, uint64_t x)
{
	for (uint64_t i = 0; i < n; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		__asm__ __volatile__("" : "+r"(x));
	}
	return x;
}

/* Exported (the executable is linked with -rdynamic) and never inlined, so that dladdr()
 * names the interrupted PC. */
__attribute__((noinline)) uint64_t workload_heavy(uint64_t x)
{
	return spin(3 * UNIT, x);
}

__attribute__((noinline)) uint64_t workload_light(uint64_t x)
{
	return spin(UNIT, x);
}

__attribute__((noinline)) uint64_t workload_loop(uint64_t x)
{
	while (!atomic_load_explicit(&stop, memory_order_relaxed))
		x = workload_light(workload_heavy(x));
	return x;
}

/* The thread's start function, exported too: every sample's stack walk must find it. */
__attribute__((noinline)) void *workload_thread(void *arg)
{
	static _Atomic uint64_t sink;

	atomic_fetch_add(&sink, workload_loop((uintptr_t)arg));
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: profiler [--threads N] [--samples N] [--hz N] [--top N] [--check]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int threads = 2, top_n = 10, hz = 1000;
	long want = 3000;
	bool check = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--check"))
			check = true;
		else if (i + 1 < argc && !strcmp(argv[i], "--threads"))
			threads = atoi(argv[++i]);
		else if (i + 1 < argc && !strcmp(argv[i], "--samples"))
			want = atol(argv[++i]);
		else if (i + 1 < argc && !strcmp(argv[i], "--hz"))
			hz = atoi(argv[++i]);
		else if (i + 1 < argc && !strcmp(argv[i], "--top"))
			top_n = atoi(argv[++i]);
		else
			usage();
	}
	if (threads < 1 || threads > 64 || want < 1 || hz < 1 || top_n < 2)
		usage();

	pthread_t *tids = calloc((size_t)threads, sizeof(*tids));

	for (int i = 0; i < threads; i++)
		pthread_create(&tids[i], NULL, workload_thread, (void *)(uintptr_t)(i + 1));
	int err = prof_start((unsigned int)hz);

	if (err) {
		fprintf(stderr, "profiler: prof_start: %s\n", strerror(-err));
		return 1;
	}
	printf("profiling %d threads at %d Hz of CPU time until %ld samples\n", threads, hz, want);
	for (int waited_ms = 0; prof_samples() < want && waited_ms < GIVE_UP_S * 1000;
	     waited_ms += 10)
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	atomic_store(&stop, true);
	for (int i = 0; i < threads; i++)
		pthread_join(tids[i], NULL);
	prof_stop();
	free(tids);
	prof_print(stdout, top_n);
	if (!check)
		return 0;

	struct prof_entry top[2], all[64];
	struct prof_stats st;
	int n = prof_top(top, 2), nall = prof_top(all, 64);
	long thread_total = 0;

	prof_get_stats(&st);
	for (int i = 0; i < nall; i++)
		if (!strcmp(all[i].name, "workload_thread"))
			thread_total = all[i].total;
	if (st.samples < want) {
		printf("check FAILED: %ld samples, %ld wanted (is SIGPROF delivered?)\n", st.samples,
		       want);
		return 1;
	}
	if (n < 2 || strcmp(top[0].name, "workload_heavy") || strcmp(top[1].name, "workload_light")) {
		printf("check FAILED: top two are %s and %s, expected workload_heavy, workload_light\n",
		       n > 0 ? top[0].name : "-", n > 1 ? top[1].name : "-");
		return 1;
	}
	/*
	 * Every sample in the two functions has workload_thread two calls up: the walk must find
	 * it.  (Not workload_loop, their direct caller: gcc gives leaf functions no frame even
	 * with -fno-omit-frame-pointer, so a frame-pointer walk from a leaf skips its caller.)
	 */
	if (st.stack_walk && thread_total < (top[0].self + top[1].self) * 9 / 10) {
		printf("check FAILED: workload_thread on %ld stacks, expected at least 90%% of %ld\n",
		       thread_total, top[0].self + top[1].self);
		return 1;
	}
	printf("check ok: workload_heavy %ld, workload_light %ld samples (ratio %.2f, expected 3)%s\n",
	       top[0].self, top[1].self, (double)top[0].self / (double)top[1].self,
	       st.stack_walk ? "; workload_thread found on their stacks" : "");
	return 0;
}
