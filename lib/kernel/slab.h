/* SPDX-License-Identifier: MIT */
/*
 * The backend allocator.  kmalloc/kfree over the C library for metadata and
 * per-CPU areas; kmem_cache (the kernel's slab caches) for the allocator's
 * objects: units of one size carved from mmap'd chunks, with a lock-free
 * index from any address to its chunk.  Every byte the library takes from
 * the system goes through here, which makes it the one place to count, fail
 * on purpose in tests, or replace.
 */
#ifndef BPFMEM_KERNEL_SLAB_H
#define BPFMEM_KERNEL_SLAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "compiler.h"
#include "llist.h"

/* P.  `align` is a power of two >= 8; `zero` clears the memory.  NULL on
 * failure (or when a test made it fail). */
void *kmalloc_aligned(size_t size, size_t align, bool zero) __hidden;
void kfree(void *ptr) __hidden;

/* P.  Zeroed pages straight from the system (mmap): only the pages that
 * are written ever use memory.  `size` a multiple of the page size; a
 * system call each, so for few and large areas only. */
void *vzalloc(size_t size) __hidden;
/* P.  `size` as given to vzalloc. */
void vfree(void *addr, size_t size) __hidden;

static inline void *kmalloc(size_t size)
{
	return kmalloc_aligned(size, 8, false);
}

/* ---- slab caches: one per size class of one allocator ---- */

struct kmem_cache;

/* P.  Units of `unit_size` bytes (any size up to 1 GiB), 8-byte aligned.
 * `tag` (0..15) is stored with every chunk in the index for the owner's
 * use (the allocator's size class).  NULL on ENOMEM. */
struct kmem_cache *kmem_cache_create(size_t unit_size, unsigned int tag) __hidden;
/* P.  Nothing may use `s` any more.  Unmaps every chunk whose units all came
 * back; a cache with units still out (leaked) stays, so that the index never
 * names freed memory. */
void kmem_cache_destroy(struct kmem_cache *s) __hidden;
/* AS, lock-free.  Up to `n` units, chained through their first word
 * (*first ... *last, last->next == NULL).  Returns how many: fewer when the
 * system (or a test) refused memory. */
int kmem_cache_alloc_bulk(struct kmem_cache *s, int n, struct llist_node **first,
			  struct llist_node **last) __hidden;
/* AS, lock-free.  A unit back to its chunk; the chunk is unmapped when it
 * was the last one out. */
void kmem_cache_free(struct kmem_cache *s, void *obj) __hidden;

/*
 * AS, lock-free, never faults: the chunk index entry covering `addr` (0:
 * no live chunk there).  It names the cache and tag without touching the
 * cache or the chunk, so a caller can check that the cache is one it knows
 * alive before slab_unit_contains() reads the cache's geometry.
 */
uint64_t slab_lookup(const void *addr) __hidden;

static inline struct kmem_cache *slab_entry_cache(uint64_t entry)
{
	return (struct kmem_cache *)(uintptr_t)((entry >> 20) << 4);
}

static inline unsigned int slab_entry_tag(uint64_t entry)
{
	return (entry >> 16) & 0xf;
}

/* AS.  With `entry` = slab_lookup(addr) naming `s`: does [addr, addr + len)
 * lie inside one unit of that chunk, past its first `skip` bytes?  len 0
 * asks whether addr itself is such a byte. */
bool slab_unit_contains(const struct kmem_cache *s, uint64_t entry, const void *addr,
			size_t len, size_t skip) __hidden;

/* P.  Call fn(start, end, arg) for every live chunk of `s`: [start, end) is
 * the chunk's span of units.  Chunks mapped or unmapped concurrently may or
 * may not be reported. */
void slab_for_each_chunk(const struct kmem_cache *s,
			 void (*fn)(uintptr_t start, uintptr_t end, void *arg), void *arg) __hidden;

#if BPFMEM_TEST_SEAMS
/* Test build only: counts of units handed out and taken back by the
 * backend, allocations refused, and chunks mapped now. */
struct slab_stats {
	long allocs;
	long frees;
	long failed;
	long chunks;
};
void slab_get_stats(struct slab_stats *st) __hidden;
/* Test build only: fail every `nth` allocation (0: never). */
void slab_fail_every(unsigned long nth) __hidden;
#endif

#endif /* BPFMEM_KERNEL_SLAB_H */
