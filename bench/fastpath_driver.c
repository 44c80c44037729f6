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

enum mode { LIMIT, CACHE, ANY, ANY_VAR };

static struct bpf_mem_alloc ma;
static enum mode mode;
/* any-var's size: one the compiler does not know, as a runtime's object
 * sizes are (the other modes ask for a constant 64 bytes) */
static volatile size_t var_size = 64;

/* One loop per mode, chosen once per call: the count of each is its own
 * alloc+free, its one-byte write and the loop, and a constant size stays a
 * constant for the inlined calls. */
#define PAIRS(ALLOC, FREE)						\
	for (long i = 0; i < n; i++) {					\
		void *p = ALLOC;					\
									\
		*(volatile char *)p = 1;				\
		FREE;							\
	}

__attribute__((noinline)) void run_pairs(long n)
{
	switch (mode) {
	case LIMIT:
		PAIRS(LIMIT_ALLOC(64), LIMIT_FREE(p))
		break;
	case CACHE:
		PAIRS(bpf_mem_cache_alloc(&ma), bpf_mem_cache_free(&ma, p))
		break;
	case ANY:
		PAIRS(bpf_mem_alloc(&ma, 64), bpf_mem_free(&ma, p))
		break;
	case ANY_VAR:
		PAIRS(bpf_mem_alloc(&ma, var_size), bpf_mem_free(&ma, p))
		break;
	}
}

int main(int argc, char **argv)
{
	void *warm[WARM];
	long n;

	static const char *const names[] = {
		[LIMIT] = "limit", [CACHE] = "cache", [ANY] = "any", [ANY_VAR] = "any-var",
	};

	for (mode = LIMIT; mode <= ANY_VAR; mode++)
		if (argc == 3 && !strcmp(argv[1], names[mode]))
			break;
	if (mode > ANY_VAR) {
		fprintf(stderr, "usage: %s limit|cache|any|any-var N\n", argv[0]);
		return 2;
	}
	n = atol(argv[2]);
	if (mode == LIMIT) {
		/* the reference the budget is read against, not checked */
		limit_prefill(256);
		run_pairs(1000);
		run_pairs(n);
		return 0;
	}
	if (bpfmem_thread_attach(0, 0) || bpf_mem_alloc_init(&ma, mode == CACHE ? 64 : 0, false)) {
		fprintf(stderr, "init failed\n");
		return 1;
	}
	/* fill this CPU's list to well above the low watermark */
	for (int i = 0; i < WARM; i++) {
		while (!(warm[i] = mode != CACHE ? bpf_mem_alloc(&ma, 64)
				       : bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL))) {
			struct timespec ts = { 0, 1000000 };

			nanosleep(&ts, NULL);	/* the refill thread is on its way */
		}
	}
	for (int i = 0; i < WARM; i++) {
		if (mode == CACHE)
			bpf_mem_cache_free(&ma, warm[i]);
		else
			bpf_mem_free(&ma, warm[i]);
	}
	run_pairs(1000);	/* warm; counted too, cancelled by the N vs 2N difference */
	run_pairs(n);
	bpf_mem_alloc_destroy(&ma);
	return 0;
}
