/* SPDX-License-Identifier: MIT */
/*
 * Per-CPU areas: one copy per virtual CPU plus one for the shared CPU, each
 * copy on its own cache lines.  Two kinds: per-CPU objects, with a small
 * header in front of copy 0 that records the stride, so per_cpu_ptr() works
 * on any of them; and cache areas, packed into shared chunks at the fixed
 * stride PCPU_STRIDE, addressed with pcpu_area_ptr() only.
 */
#ifndef BPFMEM_KERNEL_PERCPU_H
#define BPFMEM_KERNEL_PERCPU_H

#include <stddef.h>
#include <bpfmem.h>
#include "compiler.h"
#include "cpu.h"

#define PCPU_HDR_SIZE SMP_CACHE_BYTES

struct pcpu_hdr {
	size_t stride;		/* distance between copies: size rounded to lines */
	size_t size;		/* bytes the caller asked for per copy */
};

static __always_inline struct pcpu_hdr *pcpu_hdr(const void *pptr)
{
	return (struct pcpu_hdr *)((char *)pptr - PCPU_HDR_SIZE);
}

static __always_inline void *per_cpu_ptr(void *pptr, int cpu)
{
	return (char *)pptr + (size_t)cpu * pcpu_hdr(pptr)->stride;
}

/* AS.  Attaches the caller on first use. */
#define this_cpu_ptr(pptr) per_cpu_ptr((pptr), smp_processor_id())

/*
 * P.  Per-CPU objects: zeroed copies from the backend allocator, so every
 * copy is resident.  They are many, allocated in batches by the refill
 * thread, where a system call and a mapping each would cost ~100 us (mmap +
 * munmap measured on the CI VM) and run into vm.max_map_count.  NULL on
 * failure.
 */
void *__alloc_percpu(size_t size) __hidden;
void free_percpu(void *pptr) __hidden;
/* Bytes __alloc_percpu(size) takes from the backend (what accounting charges). */
size_t pcpu_footprint(size_t size) __hidden;

/*
 * Cache areas: few, long-lived, and written per CPU on first use.  CPU
 * `cpu`'s copy of the area `area` (SHARED_CPU included) lies PCPU_STRIDE
 * further per CPU: a constant, so the fast paths address it with a shift.
 */
#define PCPU_STRIDE	BPFMEM_FAST_CPU_STRIDE

static __always_inline void *pcpu_area_ptr(const void *area, int cpu, size_t off)
{
	return (char *)area + (size_t)cpu * PCPU_STRIDE + off;
}

/*
 * P.  An area of `size` bytes per copy (at most PCPU_STRIDE), 64-byte
 * aligned, every copy zeroed; NULL on failure.  A CPU whose copy is never
 * written costs no memory.
 */
void *pcpu_area_alloc(size_t size) __hidden;
/*
 * P.  `size` as given to pcpu_area_alloc.  The caller is done with every
 * copy; copies still holding data are zeroed here for the next area, read
 * first so that the pages of copies never written are not written now.
 */
void pcpu_area_free(void *area, size_t size) __hidden;

/* Around fork(): the chunk list's lock (FORK_PRIO_PCPU). */
void pcpu_before_fork(void) __hidden;
void pcpu_after_fork(void) __hidden;

#if BPFMEM_TEST_SEAMS
/* Test build only: chunks mapped now, and how many of their pages are
 * backed by memory (a negative errno if that cannot be read). */
long pcpu_nr_chunks(void) __hidden;
long pcpu_resident_pages(void) __hidden;
#endif

#endif /* BPFMEM_KERNEL_PERCPU_H */
