/* SPDX-License-Identifier: MIT */
/*
 * Per-CPU areas, and the public per-CPU accessors.  Per-CPU objects come
 * whole from the backend allocator.  Cache areas are packed into shared
 * chunks, as the kernel's percpu allocator does: an idle allocator should
 * cost the cache lines its CPUs wrote, and a mapping of its own per
 * allocator costs at least a page per CPU that used it (a fixed-size
 * allocator's cache is 384 bytes).  A chunk is one mapping of
 * nr_cpu_ids + 1 copies PCPU_STRIDE apart, after a guard copy that threads
 * without a CPU of their own reach through their negative CPU offset
 * (kernel/cpu.h) and that nobody sets up; an area is a range of offsets,
 * the same in every copy; pages are backed only once written.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpfmem.h>

#include "bug.h"
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

/* ---- cache areas ---- */

/* Offsets are handed out in blocks of a cache line, first fit. */
#define PCPU_BLOCK	SMP_CACHE_BYTES
#define PCPU_BLOCKS	(PCPU_STRIDE / PCPU_BLOCK)
#define LONG_BITS	(8 * sizeof(unsigned long))

struct pcpu_chunk {
	char *base;			/* CPU 0's copy; chunk_bytes() mapped from the guard copy */
	/* --- under pcpu_lock --- */
	struct pcpu_chunk *next;	/* pcpu_chunks, oldest first */
	int nr_areas;			/* areas handed out: unmapped at 0 */
	unsigned long used[PCPU_BLOCKS / LONG_BITS];	/* blocks of offsets taken */
};

/*
 * The chunk list and every chunk's bookkeeping.  Process context only
 * (allocator init and destroy), held across fork().  An area's copies
 * belong to its user from pcpu_area_alloc() until pcpu_area_free().
 */
static pthread_mutex_t pcpu_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pcpu_chunk *pcpu_chunks;

static size_t chunk_bytes(void)
{
	return ((size_t)nr_cpu_ids + 2) * PCPU_STRIDE;
}

static bool block_used(const struct pcpu_chunk *ch, unsigned int b)
{
	return ch->used[b / LONG_BITS] & (1ul << (b % LONG_BITS));
}

static void mark_blocks(struct pcpu_chunk *ch, unsigned int first, unsigned int n, bool used)
{
	for (unsigned int b = first; b < first + n; b++) {
		if (used)
			ch->used[b / LONG_BITS] |= 1ul << (b % LONG_BITS);
		else
			ch->used[b / LONG_BITS] &= ~(1ul << (b % LONG_BITS));
	}
}

/* The first run of `n` free blocks, or -1. */
static int find_blocks(const struct pcpu_chunk *ch, unsigned int n)
{
	unsigned int run = 0;

	for (unsigned int b = 0; b < PCPU_BLOCKS; b++) {
		run = block_used(ch, b) ? 0 : run + 1;
		if (run == n)
			return (int)(b + 1 - n);
	}
	return -1;
}

static struct pcpu_chunk *chunk_create(void)
{
	struct pcpu_chunk *ch = kmalloc_aligned(sizeof(*ch), 8, true);

	if (!ch)
		return NULL;
	ch->base = vzalloc(chunk_bytes());
	if (!ch->base) {
		kfree(ch);
		return NULL;
	}
	ch->base += PCPU_STRIDE;
	return ch;
}

void *pcpu_area_alloc(size_t size)
{
	unsigned int n = ALIGN(size, PCPU_BLOCK) / PCPU_BLOCK;
	struct pcpu_chunk **pos, *ch;
	int b = -1;

	if (!size || size > PCPU_STRIDE)
		return NULL;
	pthread_mutex_lock(&pcpu_lock);
	for (pos = &pcpu_chunks; *pos; pos = &(*pos)->next) {
		b = find_blocks(*pos, n);
		if (b >= 0)
			break;
	}
	if (b < 0) {
		*pos = chunk_create();
		b = 0;
	}
	ch = *pos;
	if (ch) {
		mark_blocks(ch, (unsigned int)b, n, true);
		ch->nr_areas++;
	}
	pthread_mutex_unlock(&pcpu_lock);
	return ch ? ch->base + (size_t)b * PCPU_BLOCK : NULL;
}

/*
 * Writes only the copies that hold something: a page no CPU wrote would
 * otherwise be backed now, and stay backed as long as the chunk is mapped.
 */
static void zero_copies(char *area, size_t bytes)
{
	for (int cpu = 0; cpu <= nr_cpu_ids; cpu++) {
		unsigned long *word = pcpu_area_ptr(area, cpu, 0);

		for (size_t i = 0; i < bytes / sizeof(*word); i++) {
			if (word[i]) {
				memset(word, 0, bytes);
				break;
			}
		}
	}
}

void pcpu_area_free(void *area, size_t size)
{
	unsigned int n = ALIGN(size, PCPU_BLOCK) / PCPU_BLOCK;
	struct pcpu_chunk **pos, *ch;

	if (!area)
		return;
	pthread_mutex_lock(&pcpu_lock);
	for (pos = &pcpu_chunks; *pos; pos = &(*pos)->next)
		if ((char *)area >= (*pos)->base && (char *)area < (*pos)->base + PCPU_STRIDE)
			break;
	ch = *pos;
	if (WARN_ON_ONCE(!ch)) {
		pthread_mutex_unlock(&pcpu_lock);
		return;
	}
	/*
	 * The last area: unmap the chunk, no zeroing.  No empty chunk is kept
	 * for the next allocator: its pages stay backed once written, which
	 * an idle process would pay for; the mapping costs one mmap and one
	 * munmap per chunk's worth of allocators, as allocator init did before.
	 */
	if (--ch->nr_areas == 0) {
		*pos = ch->next;
		pthread_mutex_unlock(&pcpu_lock);
		vfree(ch->base - PCPU_STRIDE, chunk_bytes());
		kfree(ch);
		return;
	}
	zero_copies(area, (size_t)n * PCPU_BLOCK);
	mark_blocks(ch, (unsigned int)(((char *)area - ch->base) / PCPU_BLOCK), n, false);
	pthread_mutex_unlock(&pcpu_lock);
}

void pcpu_before_fork(void)
{
	pthread_mutex_lock(&pcpu_lock);
}

void pcpu_after_fork(void)
{
	pthread_mutex_unlock(&pcpu_lock);
}

#if BPFMEM_TEST_SEAMS
long pcpu_nr_chunks(void)
{
	long n = 0;

	pthread_mutex_lock(&pcpu_lock);
	for (struct pcpu_chunk *ch = pcpu_chunks; ch; ch = ch->next)
		n++;
	pthread_mutex_unlock(&pcpu_lock);
	return n;
}

/*
 * From /proc/self/pagemap: present (bit 63) and mapped only here (bit 56).
 * mincore() would count the shared zero page that a read of a never
 * written page maps, which costs no memory.
 */
long pcpu_resident_pages(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = chunk_bytes() / page;
	uint64_t *ent = malloc(pages * sizeof(*ent));
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	long n = 0;

	if (!ent || fd < 0) {
		free(ent);
		if (fd >= 0)
			close(fd);
		return -ENOMEM;
	}
	pthread_mutex_lock(&pcpu_lock);
	for (struct pcpu_chunk *ch = pcpu_chunks; ch; ch = ch->next) {
		off_t at = (off_t)((uintptr_t)(ch->base - PCPU_STRIDE) / page * sizeof(*ent));

		if (pread(fd, ent, pages * sizeof(*ent), at) != (ssize_t)(pages * sizeof(*ent))) {
			n = -EIO;
			break;
		}
		for (size_t i = 0; i < pages; i++)
			n += (ent[i] >> 63 & 1) && (ent[i] >> 56 & 1);
	}
	pthread_mutex_unlock(&pcpu_lock);
	close(fd);
	free(ent);
	return n;
}
#endif

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
