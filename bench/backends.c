/* SPDX-License-Identifier: MIT */
/*
 * The rows of the benchmark: libbpfmem's two allocators, the limit, and the
 * peers.  Every row gets its own copy of the hot loops (LOOPS below) with
 * direct calls, so the comparison is not skewed by an indirect call.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <urcu/urcu-bp.h>

#include <bpfmem.h>
#include "bench.h"
#include "limit.h"
#include "absl_shim.h"

static const char *available(void)
{
	return NULL;
}

/* ---- libbpfmem ---- */

struct bpf_mem_alloc cache_ma, any_ma;

int cache_setup(size_t fixed)
{
	return bpf_mem_alloc_init(&cache_ma, (int)fixed, false);
}

void cache_teardown(void)
{
	bpf_mem_alloc_destroy(&cache_ma);
}

static void *cache_alloc(size_t size)
{
	return bpf_mem_cache_alloc(&cache_ma);
}

static void cache_free(void *p)
{
	bpf_mem_cache_free(&cache_ma, p);
}

static void cache_free_rcu(void *p)
{
	bpf_mem_cache_free_rcu(&cache_ma, p);
}

#define CACHE_ALLOC(size) bpf_mem_cache_alloc(&cache_ma)
#define CACHE_FREE(p) bpf_mem_cache_free(&cache_ma, (p))
LOOPS(cache, CACHE_ALLOC, CACHE_FREE)

int any_setup(size_t fixed)
{
	return bpf_mem_alloc_init(&any_ma, 0, false);
}

void any_teardown(void)
{
	bpf_mem_alloc_destroy(&any_ma);
}

static void *any_alloc(size_t size)
{
	return bpf_mem_alloc(&any_ma, size);
}

static void any_free(void *p)
{
	bpf_mem_free(&any_ma, p);
}

static void any_free_rcu(void *p)
{
	bpf_mem_free_rcu(&any_ma, p);
}

#define ANY_ALLOC(size) bpf_mem_alloc(&any_ma, (size))
#define ANY_FREE(p) bpf_mem_free(&any_ma, (p))
LOOPS(any, ANY_ALLOC, ANY_FREE)

/* ---- the limit ---- */

int limit_setup(size_t fixed)
{
	limit_prefill(256);
	return 0;
}

void noop(void)
{
}

LOOPS(limit, limit_alloc, limit_free)

/* ---- malloc peers: the same code; LD_PRELOAD picks the allocator ---- */

static int malloc_setup(size_t fixed)
{
	return 0;
}

static void *malloc_alloc(size_t size)
{
	return malloc(size);
}

static void malloc_free(void *p)
{
	free(p);
}

LOOPS(malloc, malloc, free)

#define PRELOAD_CHECK(fn, path, pkg)                                   \
static const char *fn(void)                                            \
{                                                                      \
	if (!(path)[0])                                                \
		return "not found at build time (package " pkg ")";    \
	if (access((path), R_OK))                                      \
		return "library missing (package " pkg ")";            \
	return NULL;                                                   \
}

#ifndef BENCH_JEMALLOC_SO
#define BENCH_JEMALLOC_SO ""
#endif
#ifndef BENCH_MIMALLOC_SO
#define BENCH_MIMALLOC_SO ""
#endif
#ifndef BENCH_TCMALLOC_SO
#define BENCH_TCMALLOC_SO ""
#endif
PRELOAD_CHECK(jemalloc_missing, BENCH_JEMALLOC_SO, "libjemalloc2")
PRELOAD_CHECK(mimalloc_missing, BENCH_MIMALLOC_SO, "libmimalloc2.0")
PRELOAD_CHECK(tcmalloc_missing, BENCH_TCMALLOC_SO, "libtcmalloc-minimal4")

/* ---- abseil LowLevelAlloc with a kAsyncSignalSafe arena ---- */

#ifdef BENCH_HAVE_ABSL
static const char *absl_missing(void)
{
	return NULL;
}

static int absl_setup(size_t fixed)
{
	return bench_absl_init() ? 0 : -ENOMEM;
}

LOOPS(absl, bench_absl_alloc, bench_absl_free)
#define ABSL_PAIR absl_pair
#define ABSL_BATCH absl_batch
#else
static const char *absl_missing(void)
{
	return "not found at build time (package libabsl-dev)";
}

static int absl_setup(size_t fixed)
{
	return -ENOSYS;
}

static void *bench_absl_alloc(size_t size)
{
	return NULL;
}

static void bench_absl_free(void *p)
{
}
#define ABSL_PAIR NULL
#define ABSL_BATCH NULL
#endif

/* ---- naive RCU: one call_rcu per object, the callback free()s it ---- */

struct rcu_obj {
	struct rcu_head rh;
	max_align_t data[];
};

static void *naive_alloc(size_t size)
{
	struct rcu_obj *o = malloc(sizeof(*o) + size);

	return o ? o->data : NULL;
}

static void naive_free(void *p)
{
	free((char *)p - offsetof(struct rcu_obj, data));
}

static void naive_cb(struct rcu_head *rh)
{
	free(caa_container_of(rh, struct rcu_obj, rh));
}

static void naive_free_rcu(void *p)
{
	struct rcu_obj *o = (struct rcu_obj *)((char *)p - offsetof(struct rcu_obj, data));

	urcu_bp_call_rcu(&o->rh, naive_cb);
}

static void naive_barrier(void)
{
	urcu_bp_barrier();
}

static void bpfmem_barrier(void)
{
	bpfmem_rcu_barrier();
}

#define MALLOC_ROW(nm, dsc, pre, from, miss)                                    \
	{ .name = nm, .desc = dsc, .kind = BK_PEER,                             \
	  .flags = BF_MALLOC | BF_CROSS_THREAD | BF_SIGNAL | BF_FAST,           \
	  .preload = pre, .malloc_from = from, .unavailable = miss,            \
	  .setup = malloc_setup, .teardown = noop, .alloc = malloc_alloc,      \
	  .free = malloc_free, .pair_loop = malloc_pair, .batch_loop = malloc_batch }

const struct backend backends[] = {
	{ .name = "limit", .kind = BK_LIMIT, .flags = BF_FAST,
	  .desc = "thread-local intrusive free list per size class, preallocated, no atomics, out of line",
	  .unavailable = available, .setup = limit_setup, .teardown = noop,
	  .alloc = limit_alloc, .free = limit_free,
	  .pair_loop = limit_pair, .batch_loop = limit_batch },
	{ .name = "bpfmem-cache", .kind = BK_BPFMEM,
	  .flags = BF_CROSS_THREAD | BF_SIGNAL | BF_FREE_RCU | BF_FAST,
	  .desc = "libbpfmem fixed-size cache: bpf_mem_cache_alloc/free",
	  .unavailable = available, .setup = cache_setup, .teardown = cache_teardown,
	  .alloc = cache_alloc, .free = cache_free, .free_rcu = cache_free_rcu,
	  .rcu_barrier = bpfmem_barrier, .pair_loop = cache_pair, .batch_loop = cache_batch },
	{ .name = "bpfmem-any", .kind = BK_BPFMEM,
	  .flags = BF_CROSS_THREAD | BF_SIGNAL | BF_FREE_RCU | BF_FAST,
	  .desc = "libbpfmem any-size: bpf_mem_alloc/free",
	  .unavailable = available, .setup = any_setup, .teardown = any_teardown,
	  .alloc = any_alloc, .free = any_free, .free_rcu = any_free_rcu,
	  .rcu_barrier = bpfmem_barrier, .pair_loop = any_pair, .batch_loop = any_batch },
	{ .name = "limit-inl", .kind = BK_LIMIT, .flags = BF_FAST, .loops_only = true,
	  .desc = "the limit inlined into the loop (limit_alloc_inline): the reference of the -inl rows",
	  .unavailable = available, .setup = limit_setup, .teardown = noop,
	  .alloc = limit_alloc, .free = limit_free,
	  .pair_loop = limit_inl_pair, .batch_loop = limit_inl_batch },
	{ .name = "bpfmem-cache-inl", .kind = BK_BPFMEM, .flags = BF_FAST, .loops_only = true,
	  .desc = "bpfmem-cache built with BPFMEM_INLINE: fast path inlined, libbpfmem.so behind it",
	  .unavailable = available, .setup = cache_setup, .teardown = cache_teardown,
	  .alloc = cache_alloc, .free = cache_free,
	  .pair_loop = cache_inl_pair, .batch_loop = cache_inl_batch },
	{ .name = "bpfmem-any-inl", .kind = BK_BPFMEM, .flags = BF_FAST, .loops_only = true,
	  .desc = "bpfmem-any built with BPFMEM_INLINE: fast path inlined, libbpfmem.so behind it",
	  .unavailable = available, .setup = any_setup, .teardown = any_teardown,
	  .alloc = any_alloc, .free = any_free,
	  .pair_loop = any_inl_pair, .batch_loop = any_inl_batch },
	{ .name = "bpfmem-cache-st", .kind = BK_BPFMEM, .flags = BF_FAST, .static_lib = true,
	  .desc = "bpfmem-cache linked statically (libbpfmem.a): no PLT, local TLS",
	  .unavailable = available, .setup = cache_setup, .teardown = cache_teardown,
	  .alloc = cache_alloc, .free = cache_free, .free_rcu = cache_free_rcu,
	  .rcu_barrier = bpfmem_barrier, .pair_loop = cache_pair, .batch_loop = cache_batch },
	{ .name = "bpfmem-any-st", .kind = BK_BPFMEM, .flags = BF_FAST, .static_lib = true,
	  .desc = "bpfmem-any linked statically (libbpfmem.a): no PLT, local TLS",
	  .unavailable = available, .setup = any_setup, .teardown = any_teardown,
	  .alloc = any_alloc, .free = any_free, .free_rcu = any_free_rcu,
	  .rcu_barrier = bpfmem_barrier, .pair_loop = any_pair, .batch_loop = any_batch },
	MALLOC_ROW("glibc", "glibc malloc/free", NULL, "libc.so", available),
	MALLOC_ROW("jemalloc", "jemalloc via LD_PRELOAD", BENCH_JEMALLOC_SO, "libjemalloc",
		   jemalloc_missing),
	MALLOC_ROW("mimalloc", "mimalloc via LD_PRELOAD", BENCH_MIMALLOC_SO, "libmimalloc",
		   mimalloc_missing),
	MALLOC_ROW("tcmalloc", "tcmalloc_minimal via LD_PRELOAD", BENCH_TCMALLOC_SO,
		   "libtcmalloc_minimal", tcmalloc_missing),
	{ .name = "absl-lla", .kind = BK_PEER, .flags = BF_SIGNAL,
	  .desc = "abseil LowLevelAlloc, kAsyncSignalSafe arena",
	  .unavailable = absl_missing, .setup = absl_setup, .teardown = noop,
	  .alloc = bench_absl_alloc, .free = bench_absl_free,
	  .pair_loop = ABSL_PAIR, .batch_loop = ABSL_BATCH },
	{ .name = "urcu-naive", .kind = BK_PEER, .flags = BF_FREE_RCU,
	  .desc = "malloc + one liburcu call_rcu per object, callback free()",
	  .unavailable = available, .setup = malloc_setup, .teardown = noop,
	  .alloc = naive_alloc, .free = naive_free, .free_rcu = naive_free_rcu,
	  .rcu_barrier = naive_barrier },
	{ .name = "prealloc", .kind = BK_PEER, .flags = BF_HTAB_PREALLOC,
	  .desc = "htab-* scenarios only: the map preallocated (all elements at create time, "
		  "reused at once), the kernel's default",
	  .unavailable = available, .setup = malloc_setup, .teardown = noop },
};

const int nr_backends = sizeof(backends) / sizeof(backends[0]);

const struct backend *backend_by_name(const char *name)
{
	for (int i = 0; i < nr_backends; i++)
		if (!strcmp(backends[i].name, name))
			return &backends[i];
	return NULL;
}
