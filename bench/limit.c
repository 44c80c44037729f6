/* SPDX-License-Identifier: MIT */
/*
 * The limit's out-of-line entry points and its growth (see limit.h).  This
 * file is its own translation unit and the entry points are noinline, so the
 * "limit" row pays a call as the library's rows do.
 *
 * Where these two functions land in the binary matters on some hosts: on
 * the 2-CPU EPYC VM of doc/PERFORMANCE.md, a change elsewhere in the bench
 * that moved them by 112 bytes took the row's 64-byte pair from 3.7 to
 * 6.0-6.5 ns (fast group), and aligning them to 32 or 64 bytes kept it at
 * 5.8-6.8.  A ratio against the limit can move that much from one build
 * of the bench to the next with no change in the library.
 */
#include <stdlib.h>

#include "limit.h"

static const int class_size[LIMIT_NR_CLASSES] = {
	96, 192, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
};

__thread struct limit_obj *limit_free_list[LIMIT_NR_CLASSES];

void limit_grow(int cls, int n)
{
	size_t sz = (size_t)class_size[cls];
	char *slab = malloc(sz * (size_t)n);

	if (!slab)
		abort();
	for (int i = 0; i < n; i++) {
		struct limit_obj *o = (struct limit_obj *)(slab + sz * (size_t)i);

		o->next = limit_free_list[cls];
		limit_free_list[cls] = o;
	}
}

void limit_prefill(int per_class)
{
	for (int cls = 0; cls < LIMIT_NR_CLASSES; cls++)
		limit_grow(cls, per_class);
}

__attribute__((noinline)) void *limit_alloc(size_t size)
{
	return limit_alloc_inline(size);
}

__attribute__((noinline)) void limit_free(void *p)
{
	limit_free_inline(p);
}
