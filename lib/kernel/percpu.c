/* SPDX-License-Identifier: MIT */
/* Per-CPU areas over the backend allocator, and the public per-CPU accessors. */
#include <unistd.h>

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
	hdr->mapped = 0;
	return base + PCPU_HDR_SIZE;
}

/*
 * Below this footprint an area is allocated whole, as __alloc_percpu does:
 * a mapping costs a page for its header and at least a page per CPU that
 * uses it, which for a small area (8 virtual CPUs of a fixed-size
 * allocator: 4.6 KiB) is more than the area itself.
 */
#define PCPU_SPARSE_MIN	(32u << 10)

/*
 * One mapping: a first page that holds only the header, then the copies,
 * copy 0 on a page boundary.  So the header costs one page whatever the
 * number of CPUs, copies of a page or more never share a page, smaller ones
 * share pages only with neighbouring CPUs' copies, and a CPU whose copy is
 * never written costs nothing.  The price: a CPU's first write to its copy
 * takes the page fault that zeroing at allocation took for __alloc_percpu.
 */
void *__alloc_percpu_sparse(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t bytes = ALIGN(page + pcpu_stride(size) * ((size_t)nr_cpu_ids + 1), page);
	char *base;
	struct pcpu_hdr *hdr;

	if (pcpu_footprint(size) < PCPU_SPARSE_MIN)
		return __alloc_percpu(size);
	base = vzalloc(bytes);
	if (!base)
		return NULL;
	hdr = pcpu_hdr(base + page);
	hdr->stride = pcpu_stride(size);
	hdr->size = size;
	hdr->mapped = bytes;
	return base + page;
}

void free_percpu(void *pptr)
{
	struct pcpu_hdr *hdr;

	if (!pptr)
		return;
	hdr = pcpu_hdr(pptr);
	if (hdr->mapped)
		vfree((char *)pptr - sysconf(_SC_PAGESIZE), hdr->mapped);
	else
		kfree(hdr);
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
