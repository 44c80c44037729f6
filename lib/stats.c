/* SPDX-License-Identifier: MIT */
/* Per-size-class statistics, summed over virtual CPUs without stopping them. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <bpfmem.h>
#include "memalloc.h"
#include "kernel/cpu.h"

__public int bpfmem_nr_size_classes(const struct bpf_mem_alloc *ma)
{
	if (!ma)
		return -EINVAL;
	if (ma->magic == BPFMEM_MAGIC_FIXED)
		return 1;
	if (ma->magic == BPFMEM_MAGIC_ANY)
		return NUM_CACHES;
	return 0;
}

static struct bpf_mem_cache *class_on(const struct bpf_mem_alloc *ma, int idx, int cpu)
{
	if (ma->magic == BPFMEM_MAGIC_FIXED)
		return cache_on(ma->cache, 0, cpu);
	return cache_on(ma->caches, CACHE_OFF(idx), cpu);
}

__public int bpfmem_cache_stats(const struct bpf_mem_alloc *ma, int idx,
				struct bpfmem_cache_stats *st)
{
	struct bpfmem_cache_stats out = { .sz = sizeof(out) };
	int cpu, n = bpfmem_nr_size_classes(ma);
	struct bpf_mem_cache *c;

	/* the struct only grows: a caller's smaller one (down to the first
	 * version's) gets the fields it has */
	if (n <= 0 || idx < 0 || idx >= n || !st ||
	    st->sz < offsetof(struct bpfmem_cache_stats, inline_refills))
		return -EINVAL;
	/* the shared CPU's copy is set up with the class, and is the
	 * template of the others, which are set up at their first use */
	c = class_on(ma, idx, SHARED_CPU);
	if (!atomic_load_explicit(&c->unit_size, memory_order_acquire))
		return -ENOENT;	/* per-CPU class never set up */
	out.unit_size = c->unit_size;
	out.low_watermark = c->low_watermark;
	out.high_watermark = c->high_watermark;
	out.batch = c->batch;
	for_each_possible_cpu(cpu) {
		int cnt;

		c = class_on(ma, idx, cpu);
		if (!atomic_load_explicit(&c->unit_size, memory_order_acquire))
			continue;
		/* ready chains and parked trims the owner has not taken yet
		 * are cached too */
		cnt = atomic_load_explicit(&c->free_cnt, memory_order_relaxed) + reuse_ready(c) +
		      atomic_load_explicit(&c->parked_cnt, memory_order_relaxed);
		if (cnt > 0) {
			out.cached += cnt;
			out.cpus_used++;
		}
		out.backend_allocs += atomic_load_explicit(&c->backend_allocs, memory_order_relaxed);
		out.backend_frees += atomic_load_explicit(&c->backend_frees, memory_order_relaxed);
		out.refills += atomic_load_explicit(&c->refills, memory_order_relaxed);
		out.trims += atomic_load_explicit(&c->trims, memory_order_relaxed);
		out.inline_refills += atomic_load_explicit(&c->inline_refills,
							   memory_order_relaxed);
	}
	if (st->sz < sizeof(out))
		out.sz = st->sz;
	memcpy(st, &out, out.sz);
	return 0;
}
