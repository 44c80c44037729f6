/* SPDX-License-Identifier: MIT */
/*
 * The loops of the rows whose calls are inlined: libbpfmem's with
 * BPFMEM_INLINE (the fast path in the loop, libbpfmem.so behind it), and
 * the limit's inline form, their reference.  Their own translation unit, so
 * that the macro changes these calls only.
 */
#define BPFMEM_INLINE
#include <bpfmem.h>
#include "bench.h"
#include "limit.h"

#define CACHE_ALLOC(size) bpf_mem_cache_alloc(&cache_ma)
#define CACHE_FREE(p) bpf_mem_cache_free(&cache_ma, (p))
LOOPS(cache_inl, CACHE_ALLOC, CACHE_FREE)

#define ANY_ALLOC(size) bpf_mem_alloc(&any_ma, (size))
#define ANY_FREE(p) bpf_mem_free(&any_ma, (p))
LOOPS(any_inl, ANY_ALLOC, ANY_FREE)

LOOPS(limit_inl, limit_alloc_inline, limit_free_inline)
