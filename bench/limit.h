/* SPDX-License-Identifier: MIT */
/*
 * "The limit": the cheapest allocator with the same interface shape as
 * bpf_mem_alloc/bpf_mem_free, against which every row is measured.  A
 * thread-local intrusive free list per size class, preallocated, no atomics,
 * no re-entry guard, with the same size-class lookup and 8-byte header as
 * libbpfmem's any-size allocator.  It is what a per-CPU cache costs when
 * nothing else (call, PLT, TLS model, guards, watermarks) is paid for; it is
 * not safe in signal handlers nor across threads.
 *
 * limit_alloc()/limit_free() are called out of line (bench/limit.c, noinline),
 * as the library's calls are; limit_alloc_inline()/limit_free_inline() are the
 * same code inlined into the caller, the reference for BPFMEM_INLINE rows.
 */
#ifndef BPFMEM_BENCH_LIMIT_H
#define BPFMEM_BENCH_LIMIT_H

#include <stddef.h>
#include <stdint.h>

#define LIMIT_NR_CLASSES 11
#define LIMIT_HDR 8

struct limit_obj {
	union {
		struct limit_obj *next;	/* while free */
		uintptr_t cls;		/* while allocated */
	};
};

/* the executable's own TLS: a plain %fs-relative access */
extern __thread struct limit_obj *limit_free_list[LIMIT_NR_CLASSES]
	__attribute__((tls_model("local-exec")));

/* Preallocate `per_class` objects in every size class of this thread. */
void limit_prefill(int per_class);
/* Growth is outside the measured steady state: scenarios prefill enough. */
void limit_grow(int cls, int n) __attribute__((noinline, cold));
void *limit_alloc(size_t size);
void limit_free(void *p);

static inline int limit_size_class(size_t size)
{
	static const unsigned char small_class[24] = {
		2, 2, 3, 3, 4, 4, 4, 4, 0, 0, 0, 0, 5, 5, 5, 5, 1, 1, 1, 1, 1, 1, 1, 1,
	};

	if (size <= 192)
		return small_class[(size - 1) / 8];
	if (size > 4096)
		return -1;
	return 32 - __builtin_clz((unsigned int)size - 1) - 2;
}

static inline void *limit_alloc_inline(size_t size)
{
	int cls;
	struct limit_obj *o;

	if (!size || (cls = limit_size_class(size + LIMIT_HDR)) < 0)
		return NULL;
	o = limit_free_list[cls];
	if (__builtin_expect(!o, 0)) {
		limit_grow(cls, 256);
		o = limit_free_list[cls];
	}
	limit_free_list[cls] = o->next;
	o->cls = (uintptr_t)cls;
	return (char *)o + LIMIT_HDR;
}

static inline void limit_free_inline(void *p)
{
	struct limit_obj *o = (struct limit_obj *)((char *)p - LIMIT_HDR);
	int cls = (int)o->cls;

	o->next = limit_free_list[cls];
	limit_free_list[cls] = o;
}

#endif
