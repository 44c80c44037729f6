/* SPDX-License-Identifier: MIT */
/*
 * The backend allocator: kmalloc/kfree over the C library.  Every byte the
 * library takes from the system goes through here, which makes it the one
 * place to count, fail on purpose in tests, or replace.
 */
#ifndef BPFMEM_KERNEL_SLAB_H
#define BPFMEM_KERNEL_SLAB_H

#include <stdbool.h>
#include <stddef.h>
#include "compiler.h"

/* P.  `align` is a power of two >= 8; `zero` clears the memory.  NULL on
 * failure (or when a test made it fail). */
void *kmalloc_aligned(size_t size, size_t align, bool zero) __hidden;
void kfree(void *ptr) __hidden;

static inline void *kmalloc(size_t size)
{
	return kmalloc_aligned(size, 8, false);
}

/* Test seam: counts of objects handed out and taken back by the backend. */
struct slab_stats {
	long allocs;
	long frees;
	long failed;
};
void slab_get_stats(struct slab_stats *st) __hidden;
/* Test seam: fail every `nth` allocation (0: never). */
void slab_fail_every(unsigned long nth) __hidden;

#endif /* BPFMEM_KERNEL_SLAB_H */
