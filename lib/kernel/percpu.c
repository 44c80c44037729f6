/* SPDX-License-Identifier: MIT */
/* Per-CPU areas over the backend allocator, and the public per-CPU accessors. */
#include <bpfmem.h>

#include "percpu.h"
#include "slab.h"

static size_t pcpu_stride(size_t size)
{
	return ALIGN(size ? size : 1, SMP_CACHE_BYTES);
}

size_t pcpu_footprint(size_t size)
{
	return PCPU_HDR_SIZE + pcpu_stride(size) * ((size_t)nr_cpu_ids + 1);
}

void *__alloc_percpu(size_t size)
{
	char *base = kmalloc_aligned(pcpu_footprint(size), SMP_CACHE_BYTES, true);
	struct pcpu_hdr *hdr;

	if (!base)
		return NULL;
	hdr = (struct pcpu_hdr *)base;
	hdr->stride = pcpu_stride(size);
	hdr->size = size;
	return base + PCPU_HDR_SIZE;
}

void free_percpu(void *pptr)
{
	if (pptr)
		kfree(pcpu_hdr(pptr));
}

__public void *bpfmem_per_cpu_ptr(void *pptr, int cpu)
{
	/* the shared CPU's copy is reachable too, as cpu == nr_cpus */
	if (!pptr || cpu < 0 || cpu > nr_cpu_ids)
		return NULL;
	return per_cpu_ptr(pptr, cpu);
}

__public void *bpfmem_this_cpu_ptr(void *pptr)
{
	if (!pptr)
		return NULL;
	return this_cpu_ptr(pptr);
}
