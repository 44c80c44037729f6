/* SPDX-License-Identifier: MIT */
/* Debug checks: poisoning, write-after-free, double and foreign frees. */
#include <stdint.h>
#include <string.h>

#include "debug.h"
#include "kernel/bug.h"
#include "kernel/cpu.h"

#if BPFMEM_DEBUG

#define POISON_FREE	0x6b
/* First payload word of a free object: tells a double free from a foreign
 * pointer (a free object's header is a list link, not a cache). */
#define FREE_MAGIC	0x6b6b6b6bdeadf4eeULL

static size_t payload_size(const struct bpf_mem_cache *c)
{
	return c->unit_size - LLIST_NODE_SZ;
}

/* The virtual CPU whose copy of the per-CPU area `pcpu` holds `addr`, or
 * -1 when `addr` is outside the area. */
static int cpu_of(const void *pcpu, uintptr_t addr)
{
	uintptr_t base = (uintptr_t)pcpu;

	if (addr < base || (addr - base) / PCPU_STRIDE > (size_t)nr_cpu_ids)
		return -1;
	return (int)((addr - base) / PCPU_STRIDE);
}

/* Is `hdr` one of the caches of the allocator `c` belongs to, same class? */
static bool is_cache_of(const struct bpf_mem_cache *c, const struct bpf_mem_cache *hdr)
{
	int cpu = cpu_of(c->pcpu_base, (uintptr_t)hdr);

	if (cpu < 0 || hdr != cache_on(c->pcpu_base, c->class_off, cpu))
		return false;
	return hdr->unit_size == c->unit_size && hdr->percpu_size == c->percpu_size;
}

static void report_bad_free(void *ptr)
{
	uint64_t first;

	memcpy(&first, ptr, sizeof(first));	/* every unit has >= 8 payload bytes */
	if (first == FREE_MAGIC)
		bpfmem_warn("double free of %p", ptr);
	else
		bpfmem_warn("free of %p, which this allocator did not hand out", ptr);
}

bool debug_header_ok(void *pcpu, void *ptr)
{
	uintptr_t h = *(uintptr_t *)((char *)ptr - LLIST_NODE_SZ);
	int cpu = cpu_of(pcpu, h);

	if (cpu >= 0) {
		/* another area of the chunk gives a huge or too large index */
		size_t idx = (h - (uintptr_t)cache_on(pcpu, 0, cpu)) / sizeof(struct bpf_mem_cache);

		if (idx < NUM_CACHES && h == (uintptr_t)cache_on(pcpu, CACHE_OFF(idx), cpu))
			return true;
	}
	report_bad_free(ptr);
	return false;
}

bool debug_ma_ok(const struct bpf_mem_alloc *ma, unsigned int magic)
{
	if (ma->magic == magic)
		return true;
	bpfmem_warn("allocator %p is neither initialised nor zeroed (garbage)", (void *)ma);
	return false;
}

void debug_poison(struct bpf_mem_cache *c, struct llist_node *llnode)
{
	uint64_t magic = FREE_MAGIC;

	if (c->percpu_size)
		return;	/* the payload is the per-CPU pointer: keep it */
	/* every unit has at least 8 payload bytes (the smallest class is 16) */
	memset((char *)llnode + LLIST_NODE_SZ, POISON_FREE, payload_size(c));
	memcpy((char *)llnode + LLIST_NODE_SZ, &magic, sizeof(magic));
}

bool debug_obj_freed(struct bpf_mem_cache *c, struct llist_node *llnode, bool poison)
{
	struct bpf_mem_cache *hdr = *(struct bpf_mem_cache **)llnode;

	if (!is_cache_of(c, hdr)) {
		report_bad_free((char *)llnode + LLIST_NODE_SZ);
		return false;
	}
	if (poison)
		debug_poison(c, llnode);
	return true;
}

void debug_obj_allocated(struct bpf_mem_cache *c, struct llist_node *llnode)
{
	const unsigned char *p = (unsigned char *)llnode + LLIST_NODE_SZ;
	size_t n = payload_size(c), i;
	uint64_t magic = FREE_MAGIC;

	if (c->percpu_size)
		return;
	if (memcmp(p, &magic, sizeof(magic))) {
		bpfmem_warn("write after free to %p at offset 0 (%d-byte object)",
			    (void *)p, c->unit_size);
	} else {
		for (i = sizeof(magic); i < n; i++) {
			if (p[i] != POISON_FREE) {
				bpfmem_warn("write after free to %p at offset %zu (%d-byte object)",
					    (void *)p, i, c->unit_size);
				break;
			}
		}
	}
	/* a live object must not look free: a later bad free would be
	 * reported as a double free */
	memset((void *)p, POISON_FREE, sizeof(magic));
}

#endif /* BPFMEM_DEBUG */
