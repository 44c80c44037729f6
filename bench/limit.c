/* SPDX-License-Identifier: MIT */
/*
 * The limit: a thread-local intrusive free list per size class, preallocated,
 * no atomics, no re-entry guard, called out of line (this file is its own
 * translation unit and the entry points are noinline) with the same size-class
 * lookup and 8-byte header as libbpfmem's any-size allocator.  It is what a
 * per-CPU cache costs when nothing else (PLT, TLS model, guards, watermarks)
 * is paid for; it is not safe in signal handlers nor across threads.
 */
#include <stdint.h>
#include <stdlib.h>

#include "limit.h"

#define NR_CLASSES 11
#define HDR 8

static const int class_size[NR_CLASSES] = { 96, 192, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096 };
static const unsigned char small_class[24] = {
	2, 2, 3, 3, 4, 4, 4, 4, 0, 0, 0, 0, 5, 5, 5, 5, 1, 1, 1, 1, 1, 1, 1, 1,
};

struct obj {
	union {
		struct obj *next;	/* while free */
		uintptr_t cls;		/* while allocated */
	};
};

/* local-exec TLS: the executable's own, a plain %fs-relative access */
static __thread struct obj *free_list[NR_CLASSES];

static inline int size_class(size_t size)
{
	if (size <= 192)
		return small_class[(size - 1) / 8];
	if (size > 4096)
		return -1;
	return 32 - __builtin_clz((unsigned int)size - 1) - 2;
}

/* Growth is outside the measured steady state: scenarios prefill enough. */
static __attribute__((noinline, cold)) void grow(int cls, int n)
{
	size_t sz = (size_t)class_size[cls];
	char *slab = malloc(sz * (size_t)n);

	if (!slab)
		abort();
	for (int i = 0; i < n; i++) {
		struct obj *o = (struct obj *)(slab + sz * (size_t)i);

		o->next = free_list[cls];
		free_list[cls] = o;
	}
}

void limit_prefill(int per_class)
{
	for (int cls = 0; cls < NR_CLASSES; cls++)
		grow(cls, per_class);
}

__attribute__((noinline)) void *limit_alloc(size_t size)
{
	int cls;
	struct obj *o;

	if (!size || (cls = size_class(size + HDR)) < 0)
		return NULL;
	o = free_list[cls];
	if (__builtin_expect(!o, 0)) {
		grow(cls, 256);
		o = free_list[cls];
	}
	free_list[cls] = o->next;
	o->cls = (uintptr_t)cls;
	return (char *)o + HDR;
}

__attribute__((noinline)) void limit_free(void *p)
{
	struct obj *o = (struct obj *)((char *)p - HDR);
	int cls = (int)o->cls;

	o->next = free_list[cls];
	free_list[cls] = o;
}
