/* SPDX-License-Identifier: MIT */
/* Per-size-class statistics, summed over virtual CPUs without stopping them. */
#include <errno.h>

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
		return (struct bpf_mem_cache *)((char *)ma->cache + (size_t)cpu * CACHE_STRIDE);
	return &((struct bpf_mem_caches *)((char *)ma->caches +
					   (size_t)cpu * CACHES_STRIDE))->cache[idx];
}

__public int bpfmem_cache_stats(const struct bpf_mem_alloc *ma, int idx,
				struct bpfmem_cache_stats *st)
{
	struct bpfmem_cache_stats out = { .sz = sizeof(out) };
	int cpu, n = bpfmem_nr_size_classes(ma);

	if (n <= 0 || idx < 0 || idx >= n || !st || st->sz < sizeof(out))
		return -EINVAL;
	for_each_possible_cpu(cpu) {
		struct bpf_mem_cache *c = class_on(ma, idx, cpu);
		int cnt;

		if (!c->unit_size)
			return -ENOENT;	/* per-CPU class never set up */
		out.unit_size = c->unit_size;
		out.low_watermark = c->low_watermark;
		out.high_watermark = c->high_watermark;
		out.batch = c->batch;
		cnt = atomic_load_explicit(&c->free_cnt, memory_order_relaxed);
		/* a refill batch the owner has not taken yet is cached too */
		if (atomic_load_explicit(&c->refill_llist.first, memory_order_relaxed))
			cnt += atomic_load_explicit(&c->refill_cnt, memory_order_relaxed);
		if (cnt > 0) {
			out.cached += cnt;
			out.cpus_used++;
		}
		out.backend_allocs += atomic_load_explicit(&c->backend_allocs, memory_order_relaxed);
		out.backend_frees += atomic_load_explicit(&c->backend_frees, memory_order_relaxed);
		out.refills += atomic_load_explicit(&c->refills, memory_order_relaxed);
		out.trims += atomic_load_explicit(&c->trims, memory_order_relaxed);
	}
	*st = out;
	return 0;
}
