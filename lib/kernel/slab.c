/* SPDX-License-Identifier: MIT */
/* The backend allocator seam: malloc/aligned_alloc/free with counters. */
#include <stdlib.h>
#include <string.h>

#include "slab.h"

static _Atomic long nr_allocs, nr_frees, nr_failed;
static _Atomic unsigned long fail_every, fail_tick;

void *kmalloc_aligned(size_t size, size_t align, bool zero)
{
	unsigned long nth = atomic_load_explicit(&fail_every, memory_order_relaxed);
	void *p;

	if (unlikely(nth) &&
	    atomic_fetch_add_explicit(&fail_tick, 1, memory_order_relaxed) % nth == nth - 1) {
		atomic_fetch_add_explicit(&nr_failed, 1, memory_order_relaxed);
		return NULL;
	}
	if (align <= 16) {
		p = zero ? calloc(1, size) : malloc(size);
	} else {
		/* aligned_alloc wants a multiple of the alignment */
		p = aligned_alloc(align, ALIGN(size, align));
		if (p && zero)
			memset(p, 0, size);
	}
	if (!p) {
		atomic_fetch_add_explicit(&nr_failed, 1, memory_order_relaxed);
		return NULL;
	}
	atomic_fetch_add_explicit(&nr_allocs, 1, memory_order_relaxed);
	return p;
}

void kfree(void *ptr)
{
	if (!ptr)
		return;
	atomic_fetch_add_explicit(&nr_frees, 1, memory_order_relaxed);
	free(ptr);
}

void slab_get_stats(struct slab_stats *st)
{
	st->allocs = atomic_load(&nr_allocs);
	st->frees = atomic_load(&nr_frees);
	st->failed = atomic_load(&nr_failed);
}

void slab_fail_every(unsigned long nth)
{
	atomic_store(&fail_tick, 0);
	atomic_store(&fail_every, nth);
}
