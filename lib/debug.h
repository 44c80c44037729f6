/* SPDX-License-Identifier: MIT */
/*
 * Debug checks (-DBPFMEM_DEBUG=ON): free objects are poisoned and checked
 * when handed out again (write after free), frees are checked for double
 * free and for pointers this allocator never handed out.  Every finding goes
 * through the warning hook; a bad free is dropped, never a crash.  In
 * release builds these are empty inlines.
 */
#ifndef BPFMEM_DEBUG_H
#define BPFMEM_DEBUG_H

#include <stdbool.h>
#include "memalloc.h"

#ifndef BPFMEM_DEBUG
#define BPFMEM_DEBUG 0
#endif

#if BPFMEM_DEBUG
/* A free of `llnode` into cache `c` (of the same class): false to drop it. */
bool debug_obj_freed(struct bpf_mem_cache *c, struct llist_node *llnode, bool poison) __hidden;
/* Before bpf_mem_free reads the header: does it name one of the caches in
 * the per-CPU area `pcpu`?  Reports and false if not. */
bool debug_header_ok(void *pcpu, void *ptr) __hidden;
/* An allocation or free entry point found ma's per-CPU area set: is it an
 * initialised allocator of this kind (`magic`)?  Reports garbage. */
bool debug_ma_ok(const struct bpf_mem_alloc *ma, unsigned int magic) __hidden;
/* `llnode` leaves a free list for a caller: was it written while free? */
void debug_obj_allocated(struct bpf_mem_cache *c, struct llist_node *llnode) __hidden;
/* Poison objects that joined the free path without debug_obj_freed(). */
void debug_poison(struct bpf_mem_cache *c, struct llist_node *llnode) __hidden;
#else
static inline bool debug_ma_ok(const struct bpf_mem_alloc *ma, unsigned int magic)
{
	return true;
}
static inline bool debug_header_ok(void *pcpu, void *ptr)
{
	return true;
}
static inline bool debug_obj_freed(struct bpf_mem_cache *c, struct llist_node *llnode,
				   bool poison)
{
	return true;
}
static inline void debug_obj_allocated(struct bpf_mem_cache *c, struct llist_node *llnode)
{
}
static inline void debug_poison(struct bpf_mem_cache *c, struct llist_node *llnode)
{
}
#endif

static inline void debug_poison_list(struct bpf_mem_cache *c, struct llist_node *llnode)
{
	for (; BPFMEM_DEBUG && llnode; llnode = llnode->next)
		debug_poison(c, llnode);
}

#endif /* BPFMEM_DEBUG_H */
