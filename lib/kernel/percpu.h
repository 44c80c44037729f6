/* SPDX-License-Identifier: MIT */
/*
 * Per-CPU areas: one copy per virtual CPU plus one for the shared CPU, each
 * copy on its own cache lines.  A small header in front of copy 0 records
 * the stride, so per_cpu_ptr() works on any per-CPU pointer.
 */
#ifndef BPFMEM_KERNEL_PERCPU_H
#define BPFMEM_KERNEL_PERCPU_H

#include <stddef.h>
#include "compiler.h"
#include "cpu.h"

#define PCPU_HDR_SIZE SMP_CACHE_BYTES

struct pcpu_hdr {
	size_t stride;		/* distance between copies: size rounded to lines */
	size_t size;		/* bytes the caller asked for per copy */
	size_t mapped;		/* __alloc_percpu_sparse: bytes mapped; else 0 */
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
 * P.  Zeroed copies; NULL on failure.  Two kinds, because no size
 * threshold can tell them apart (a 4096-byte per-CPU object and an
 * any-size allocator's caches have the same footprint):
 *
 * __alloc_percpu: from the backend allocator, zeroed there, so every copy
 * is resident.  For per-CPU objects: many, allocated in batches by the
 * refill thread, where a system call and a mapping each would cost ~100 us
 * (mmap + munmap measured on the CI VM) and run into vm.max_map_count.
 *
 * __alloc_percpu_sparse: one mapping (vzalloc) whose pages are backed only
 * once written, so CPUs that never touch their copy cost no memory.  For
 * the few long-lived areas whose copies are written per CPU on first use:
 * an allocator's caches.  Areas under 32 KiB come from __alloc_percpu: the
 * mapping's page granularity would cost more than it saves.
 */
void *__alloc_percpu(size_t size) __hidden;
void *__alloc_percpu_sparse(size_t size) __hidden;
void free_percpu(void *pptr) __hidden;
/* Bytes __alloc_percpu(size) takes from the backend (what accounting charges). */
size_t pcpu_footprint(size_t size) __hidden;

#endif /* BPFMEM_KERNEL_PERCPU_H */
