/* SPDX-License-Identifier: MIT */
/*
 * Which memory an allocator owns, answered from the backend's chunk index
 * (kernel/slab.c): bpfmem_owns() for the bounds checks of BPF interpreters,
 * bpfmem_for_each_chunk() for runtimes that register memory ranges up front.
 */
#include <errno.h>

#include <bpfmem.h>
#include "memalloc.h"
#include "kernel/cpu.h"
#include "kernel/slab.h"

static bool ma_has_slabs(const struct bpf_mem_alloc *ma)
{
	return ma && !ma->percpu &&
	       (ma->magic == BPFMEM_MAGIC_ANY || ma->magic == BPFMEM_MAGIC_FIXED);
}

/* Class `idx`'s template (the shared CPU's copy), which holds its slab. */
static const struct bpf_mem_cache *class_cache(const struct bpf_mem_alloc *ma, unsigned int idx)
{
	if (ma->magic == BPFMEM_MAGIC_FIXED)
		return idx == 0 ? cache_on(ma->cache, 0, SHARED_CPU) : NULL;
	if (idx >= NUM_CACHES)
		return NULL;
	return cache_on(ma->caches, CACHE_OFF(idx), SHARED_CPU);
}

/*
 * The index entry names a slab and its tag (the size class) without
 * touching either; only when that slab is the one of ma's class, which is
 * alive as long as ma is, are its geometry fields read.
 */
__public bool bpfmem_owns(const struct bpf_mem_alloc *ma, const void *addr, size_t len)
{
	const struct bpf_mem_cache *c;
	uint64_t entry;

	if (!ma_has_slabs(ma))
		return false;
	entry = slab_lookup(addr);
	if (!entry)
		return false;
	c = class_cache(ma, slab_entry_tag(entry));
	if (!c || !c->slab || slab_entry_cache(entry) != c->slab)
		return false;
	/* the 8-byte header in front of each object is the allocator's */
	return slab_unit_contains(c->slab, entry, addr, len, LLIST_NODE_SZ);
}

struct chunk_walk {
	void (*fn)(void *start, size_t len, void *arg);
	void *arg;
	int n;
};

static void report_chunk(uintptr_t start, uintptr_t end, void *arg)
{
	struct chunk_walk *w = arg;

	w->fn((void *)start, end - start, w->arg);
	w->n++;
}

__public int bpfmem_for_each_chunk(const struct bpf_mem_alloc *ma,
				   void (*fn)(void *start, size_t len, void *arg), void *arg)
{
	struct chunk_walk w = { fn, arg, 0 };

	if (!ma_has_slabs(ma) || !fn)
		return -EINVAL;
	for (unsigned int i = 0; i < NUM_CACHES; i++) {
		const struct bpf_mem_cache *c = class_cache(ma, i);

		if (!c)
			break;
		if (c->slab)
			slab_for_each_chunk(c->slab, report_chunk, &w);
	}
	return w.n;
}
