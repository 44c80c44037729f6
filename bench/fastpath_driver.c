/* SPDX-License-Identifier: MIT */
/*
 * Driver for the fast-path instruction budget: N alloc+free pairs of one
 * allocator (or of the limit, for reference) inside run_pairs(), which
 * fastpath-guard.sh counts with
 * callgrind --toggle-collect=run_pairs.  The caches are warmed up first so
 * that the counted loop stays between the watermarks: no refill, no trim.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpfmem.h>
#include "limit.h"

/* bpfmem-fastpath-driver-inl is this file built with BPFMEM_INLINE: the
 * library's fast paths, and the limit's, inlined into run_pairs() */
#ifdef BPFMEM_INLINE
#define LIMIT_ALLOC limit_alloc_inline
#define LIMIT_FREE limit_free_inline
#else
#define LIMIT_ALLOC limit_alloc
#define LIMIT_FREE limit_free
#endif

#define WARM 64

static struct bpf_mem_alloc ma;
static bool any, limit;

static inline void *alloc_one(void)
{
	if (limit)
		return LIMIT_ALLOC(64);
	return any ? bpf_mem_alloc(&ma, 64) : bpf_mem_cache_alloc(&ma);
}

static inline void free_one(void *p)
{
	if (limit)
		LIMIT_FREE(p);
	else if (any)
		bpf_mem_free(&ma, p);
	else
		bpf_mem_cache_free(&ma, p);
}

__attribute__((noinline)) void run_pairs(long n)
{
	for (long i = 0; i < n; i++) {
		void *p = alloc_one();

		*(volatile char *)p = 1;
		free_one(p);
	}
}

int main(int argc, char **argv)
{
	void *warm[WARM];
	long n;

	if (argc != 3 || (strcmp(argv[1], "cache") && strcmp(argv[1], "any") &&
			  strcmp(argv[1], "limit"))) {
		fprintf(stderr, "usage: %s cache|any|limit N\n", argv[0]);
		return 2;
	}
	any = !strcmp(argv[1], "any");
	n = atol(argv[2]);
	if (!strcmp(argv[1], "limit")) {
		/* the reference the budget is read against, not checked */
		limit = true;
		limit_prefill(256);
		run_pairs(1000);
		run_pairs(n);
		return 0;
	}
	if (bpfmem_thread_attach(0, 0) || bpf_mem_alloc_init(&ma, any ? 0 : 64, false)) {
		fprintf(stderr, "init failed\n");
		return 1;
	}
	/* fill this CPU's list to well above the low watermark */
	for (int i = 0; i < WARM; i++) {
		while (!(warm[i] = any ? bpf_mem_alloc(&ma, 64)
				       : bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL))) {
			struct timespec ts = { 0, 1000000 };

			nanosleep(&ts, NULL);	/* the refill thread is on its way */
		}
	}
	for (int i = 0; i < WARM; i++)
		free_one(warm[i]);
	run_pairs(1000);	/* warm; counted too, cancelled by the N vs 2N difference */
	run_pairs(n);
	bpf_mem_alloc_destroy(&ma);
	return 0;
}
