/* SPDX-License-Identifier: MIT */
/*
 * The owns scenario: ns per bpfmem_owns() query, for addresses inside live
 * objects (hit), inside objects of another allocator of the same size
 * (foreign: the chunk index names another cache) and outside any chunk
 * (unmapped), against the table of live objects a host would otherwise keep
 * (binary search over sorted ranges), measured in the same run.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <bpfmem.h>
#include "bench.h"

#define OWNS_OBJS	4096
#define OWNS_SIZE	64

struct range {
	uintptr_t start, end;
};

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

static bool table_owns(const struct range *t, int n, const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;
	int lo = 0, hi = n - 1;

	while (lo <= hi) {
		int mid = (lo + hi) / 2;

		if (a < t[mid].start)
			hi = mid - 1;
		else if (a >= t[mid].end)
			lo = mid + 1;
		else
			return len <= t[mid].end - a;
	}
	return false;
}

/* Queries in a random order over `addrs`; ns per query, hits counted. */
static double time_queries(struct bpf_mem_alloc *ma, const struct range *table, char **addrs,
			   const int *order, long n, long *hits)
{
	uint64_t t0 = now_ns();
	long h = 0;

	for (long i = 0; i < n; i++) {
		const char *p = addrs[order[i % OWNS_OBJS]] + 8;

		h += ma ? bpfmem_owns(ma, p, 16) : table_owns(table, OWNS_OBJS, p, 16);
	}
	*hits = h;
	return (double)(now_ns() - t0) / (double)n;
}

bool owns_rows(const struct backend *b)
{
	return b->kind == BK_BPFMEM && !b->static_lib && !b->loops_only;
}

int run_owns(const struct backend *b, const struct bench_opts *o)
{
	static struct bpf_mem_alloc ma, other;
	static char *mine[OWNS_OBJS], *foreign[OWNS_OBJS], *unmapped[OWNS_OBJS];
	static struct range table[OWNS_OBJS];
	static int order[OWNS_OBJS];
	int fixed = strcmp(b->name, "bpfmem-any") ? OWNS_SIZE : 0;
	long n = o->quick ? 1000000 : 10000000, hits[4];
	size_t span = (size_t)OWNS_OBJS * 64;
	char *gone;
	double ns[4];

	if (bpf_mem_alloc_init(&ma, fixed, false) || bpf_mem_alloc_init(&other, fixed, false))
		return -1;
	gone = mmap(NULL, span, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (gone == MAP_FAILED || munmap(gone, span))
		return -1;
	for (int i = 0; i < OWNS_OBJS; i++) {
		mine[i] = fixed ? bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL)
				: bpf_mem_alloc(&ma, OWNS_SIZE);
		foreign[i] = fixed ? bpf_mem_cache_alloc_flags(&other, BPFMEM_GFP_KERNEL)
				   : bpf_mem_alloc(&other, OWNS_SIZE);
		while (!fixed && (!mine[i] || !foreign[i])) {	/* any-size: wait for refills */
			bpfmem_rcu_barrier();
			mine[i] = mine[i] ? mine[i] : bpf_mem_alloc(&ma, OWNS_SIZE);
			foreign[i] = foreign[i] ? foreign[i] : bpf_mem_alloc(&other, OWNS_SIZE);
		}
		if (!mine[i] || !foreign[i])
			return -1;
		unmapped[i] = gone + (size_t)i * 64;
		table[i] = (struct range){ (uintptr_t)mine[i], (uintptr_t)mine[i] + OWNS_SIZE };
		order[i] = i;
	}
	qsort(table, OWNS_OBJS, sizeof(table[0]), cmp_range);
	srand(1);
	for (int i = OWNS_OBJS - 1; i > 0; i--) {
		int j = rand() % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	ns[0] = time_queries(&ma, NULL, mine, order, n, &hits[0]);
	ns[1] = time_queries(&ma, NULL, foreign, order, n, &hits[1]);
	ns[2] = time_queries(&ma, NULL, unmapped, order, n, &hits[2]);
	ns[3] = time_queries(NULL, table, mine, order, n, &hits[3]);
	if (hits[0] != n || hits[1] || hits[2] || hits[3] != n) {
		emit_note("owns: wrong answers: hits %ld/%ld foreign %ld unmapped %ld table %ld",
			  hits[0], n, hits[1], hits[2], hits[3]);
		return -1;
	}
	emit_metric("owns.hit", "ns", true, ns[0]);
	emit_metric("owns.miss_foreign", "ns", true, ns[1]);
	emit_metric("owns.miss_unmapped", "ns", true, ns[2]);
	emit_metric("owns.table_hit", "ns", true, ns[3]);
	for (int i = 0; i < OWNS_OBJS; i++) {
		fixed ? bpf_mem_cache_free(&ma, mine[i]) : bpf_mem_free(&ma, mine[i]);
		fixed ? bpf_mem_cache_free(&other, foreign[i]) : bpf_mem_free(&other, foreign[i]);
	}
	bpf_mem_alloc_destroy(&ma);
	bpf_mem_alloc_destroy(&other);
	return 0;
}
