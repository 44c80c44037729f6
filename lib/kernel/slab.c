/* SPDX-License-Identifier: MIT */
/*
 * The backend allocator: kmalloc/kfree over the C library, and slab caches
 * whose units are carved from chunks mapped with mmap, found again from any
 * address through a lock-free chunk index.
 *
 * A chunk is CHUNK_SIZE bytes aligned to CHUNK_SIZE (larger, and holding a
 * single unit, when the unit does not fit eight times): a header, then units
 * of `stride` bytes.  Its state word packs the head of its list of free units
 * (unit indexes, linked through the units' first word), the number of units
 * out (handed to the allocator above) and two flags, so that every decision
 * about a chunk is one compare-and-swap of that word:
 *
 *   LISTED  the chunk is on its cache's `partial` list, or held by the
 *           allocation or sweep that took it from there (or just mapped it);
 *           only the holder takes units from it or unmaps it.
 *   !LISTED every unit is out and nobody holds it; the free that brings a
 *           unit back lists it again (or, if that was the only unit out,
 *           unmaps it).
 *
 * `partial` is an llist: chunks are pushed with a CAS (by a holder giving
 * them back, or by the free that relists them) and taken with an exchange
 * of the whole list, never popped one by one, so no ABA.  Within a chunk,
 * freers push units with a CAS and only the holder removes them, so the
 * chain below a head it has read cannot change under it.  Nothing takes a
 * lock and the only system calls are mmap and munmap, so allocation and
 * free are async-signal-safe.
 *
 * A chunk goes back to the system when all its units are back: at once for
 * single-unit chunks (the free sees !LISTED and no unit out); otherwise the
 * free that makes a listed chunk empty sweeps `partial`, unmapping every
 * empty chunk but one, which stays as hysteresis against map/unmap cycles
 * at a chunk boundary (kmem_cache_destroy unmaps it).
 *
 * The index maps each CHUNK_SIZE slot of the address space to an entry that
 * names the cache, a tag and how far the chunk starts before the slot: a
 * two-level table of atomic words whose leaves are mapped on first use and
 * never unmapped, so a lookup of any address reads only the table.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "slab.h"

/*
 * Test seams (BPFMEM_TEST_SEAMS, test builds only): global counters and
 * fault injection.  The release library has neither, nor their atomic
 * operations on every backend allocation.
 */
#if BPFMEM_TEST_SEAMS
static _Atomic long nr_allocs, nr_frees, nr_failed, nr_chunks;
static _Atomic unsigned long fail_every, fail_tick;

#define seam_count(counter, n) \
	atomic_fetch_add_explicit(&(counter), (n), memory_order_relaxed)

/*
 * Of the next `n` allocations, how many succeed before the failing one.
 * Consumes the ticks of those and of the failing one only.
 */
static int fault_clamp(int n)
{
	unsigned long nth = atomic_load_explicit(&fail_every, memory_order_relaxed);
	unsigned long t, ok;

	if (likely(!nth))
		return n;
	t = atomic_load_explicit(&fail_tick, memory_order_relaxed);
	do {
		ok = nth - 1 - t % nth;
		if (ok >= (unsigned long)n)
			ok = n;
	} while (!atomic_compare_exchange_weak_explicit(&fail_tick, &t,
							t + ok + (ok < (unsigned long)n),
							memory_order_relaxed, memory_order_relaxed));
	if (ok < (unsigned long)n)
		seam_count(nr_failed, 1);
	return (int)ok;
}

void slab_get_stats(struct slab_stats *st)
{
	st->allocs = atomic_load(&nr_allocs);
	st->frees = atomic_load(&nr_frees);
	st->failed = atomic_load(&nr_failed);
	st->chunks = atomic_load(&nr_chunks);
}

void slab_fail_every(unsigned long nth)
{
	atomic_store(&fail_tick, 0);
	atomic_store(&fail_every, nth);
}
#else
#define seam_count(counter, n) ((void)(n))

static inline int fault_clamp(int n)
{
	return n;
}
#endif

void *kmalloc_aligned(size_t size, size_t align, bool zero)
{
	void *p;

	if (!fault_clamp(1))
		return NULL;
	if (align <= 16) {
		p = zero ? calloc(1, size) : malloc(size);
	} else {
		/* aligned_alloc wants a multiple of the alignment */
		p = aligned_alloc(align, ALIGN(size, align));
		if (p && zero)
			memset(p, 0, size);
	}
	if (!p) {
		seam_count(nr_failed, 1);
		return NULL;
	}
	seam_count(nr_allocs, 1);
	return p;
}

void kfree(void *ptr)
{
	if (!ptr)
		return;
	seam_count(nr_frees, 1);
	free(ptr);
}

/* ---- chunk geometry ---- */

#define CHUNK_SHIFT	18
#define CHUNK_SIZE	((uintptr_t)1 << CHUNK_SHIFT)
#define CHUNK_HDR	64		/* units start here: keeps them 64-byte aligned */
#define VA_BITS		48		/* user addresses the index covers */
#define UNIT_NIL	0xffffu		/* end of a chunk's free list */
#define MAX_UNITS	0xfffeu

struct kmem_cache {
	/* --- set by kmem_cache_create, read-only afterwards --- */
	size_t unit_size;	/* bytes a caller may use from a unit's start */
	size_t stride;		/* distance between units: unit_size rounded to 8 */
	size_t map_size;	/* bytes of one chunk, header included */
	size_t page;		/* the system's page size (sysconf is not async-signal-safe) */
	unsigned int nr_units;	/* per chunk: many, or 1 for large units */
	unsigned int tag;

	/* chunks with units to hand out that nobody holds: anyone pushes
	 * (CAS), allocation and sweeps take the whole list (exchange) */
	struct llist_head partial ____cacheline_aligned;
	_Atomic long nr_chunks;	/* mapped now: destroy frees the cache only at 0 */
	/* bumped by a free that empties a listed chunk, before it sweeps; a
	 * pass that held chunks meanwhile sees it changed after putting them
	 * back and sweeps too, so an empty chunk is never missed by both */
	_Atomic unsigned long sweep_seq;
	struct llist_node leaked;	/* on `graveyard` after a destroy with units out */
};

/* Caches destroyed with units still out: the index names them, so they stay
 * allocated, and reachable from here so that LeakSanitizer does not report
 * them on top of the leak destroy already warned about. */
static struct llist_head graveyard;

struct slab_chunk {
	struct llist_node node;		/* on cache->partial: written by the pusher, which holds it */
	struct kmem_cache *cache;	/* set at map */
	_Atomic uint64_t state;		/* see ST_* below: every transition is a CAS */
	unsigned int carved;		/* holder only: units ever carved, the rest never touched */
	unsigned int populated;		/* holder only: bytes from the chunk's start prefaulted */
};
_Static_assert(sizeof(struct slab_chunk) <= CHUNK_HDR, "chunk header too large");

/* state: free-list head (a unit index) | units out << 16 | flags */
#define ST_HEAD(s)	((unsigned int)((s) & 0xffff))
#define ST_USED(s)	((unsigned int)(((s) >> 16) & 0xffff))
#define ST_LISTED	((uint64_t)1 << 32)
#define ST_DEAD		((uint64_t)1 << 33)	/* unmapped by whoever set it */
#define ST_MAKE(head, used, flags) ((uint64_t)(head) | (uint64_t)(used) << 16 | (flags))

static inline struct slab_chunk *chunk_of(const void *obj)
{
	return (struct slab_chunk *)((uintptr_t)obj & ~(CHUNK_SIZE - 1));
}

static inline char *unit_at(const struct kmem_cache *s, struct slab_chunk *ch, unsigned int idx)
{
	return (char *)ch + CHUNK_HDR + (size_t)idx * s->stride;
}

/* A free unit's first word: the index of the next free unit. */
static inline _Atomic unsigned int *unit_link(char *unit)
{
	return (_Atomic unsigned int *)unit;
}

/* ---- the chunk index ---- */

#define SLOT_BITS	(VA_BITS - CHUNK_SHIFT)
#define LEAF_BITS	15
#define ROOT_BITS	(SLOT_BITS - LEAF_BITS)
#define LEAF_BYTES	(sizeof(_Atomic uint64_t) << LEAF_BITS)

/* Leaves are installed with a CAS and never removed. */
static _Atomic(_Atomic uint64_t *) index_root[1u << ROOT_BITS];

static _Atomic uint64_t *leaf_of(uintptr_t slot, bool create)
{
	_Atomic(_Atomic uint64_t *) *root = &index_root[slot >> LEAF_BITS];
	_Atomic uint64_t *leaf = atomic_load_explicit(root, memory_order_acquire), *mine;

	if (leaf || !create)
		return leaf;
	mine = mmap(NULL, LEAF_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mine == MAP_FAILED)
		return NULL;
	if (atomic_compare_exchange_strong_explicit(root, &leaf, mine, memory_order_acq_rel,
						    memory_order_acquire))
		return mine;
	munmap(mine, LEAF_BYTES);	/* another thread installed one first */
	return leaf;
}

uint64_t slab_lookup(const void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	_Atomic uint64_t *leaf;

	if (a >> VA_BITS)
		return 0;
	leaf = leaf_of(a >> CHUNK_SHIFT, false);
	if (!leaf)
		return 0;
	return atomic_load_explicit(&leaf[(a >> CHUNK_SHIFT) & ((1u << LEAF_BITS) - 1)],
				    memory_order_acquire);
}

static size_t chunk_slots(const struct kmem_cache *s)
{
	return (s->map_size + CHUNK_SIZE - 1) >> CHUNK_SHIFT;
}

/* Add (or remove) the entries of every slot the chunk covers.  False only
 * when adding and a leaf could not be mapped: the caller unwinds. */
static bool index_set(const struct kmem_cache *s, struct slab_chunk *ch, bool add)
{
	uintptr_t first = (uintptr_t)ch >> CHUNK_SHIFT;

	for (size_t d = 0; d < chunk_slots(s); d++) {
		_Atomic uint64_t *leaf = leaf_of(first + d, add);
		uint64_t e = ((uint64_t)(uintptr_t)s >> 4) << 20 | (uint64_t)s->tag << 16 | d;

		if (!leaf)
			return false;
		atomic_store_explicit(&leaf[(first + d) & ((1u << LEAF_BITS) - 1)], add ? e : 0,
				      memory_order_release);
	}
	return true;
}

bool slab_unit_contains(const struct kmem_cache *s, uint64_t entry, const void *addr,
			size_t len, size_t skip)
{
	uintptr_t a = (uintptr_t)addr;
	uintptr_t first = (((a >> CHUNK_SHIFT) - (entry & 0xffff)) << CHUNK_SHIFT) + CHUNK_HDR;
	uintptr_t idx, unit;

	if (a < first)
		return false;
	idx = (a - first) / s->stride;
	if (idx >= s->nr_units)
		return false;
	unit = first + idx * s->stride;
	if (a < unit + skip || a >= unit + s->unit_size)
		return false;
	return len <= unit + s->unit_size - a;
}

void slab_for_each_chunk(const struct kmem_cache *s,
			 void (*fn)(uintptr_t start, uintptr_t end, void *arg), void *arg)
{
	for (uintptr_t r = 0; r < (1u << ROOT_BITS); r++) {
		_Atomic uint64_t *leaf = atomic_load_explicit(&index_root[r], memory_order_acquire);

		for (uintptr_t i = 0; leaf && i < (1u << LEAF_BITS); i++) {
			uint64_t e = atomic_load_explicit(&leaf[i], memory_order_acquire);
			uintptr_t start = ((r << LEAF_BITS | i) << CHUNK_SHIFT) + CHUNK_HDR;

			if (e && slab_entry_cache(e) == s && (e & 0xffff) == 0)
				fn(start, start + (s->nr_units - 1) * s->stride + s->unit_size, arg);
		}
	}
}

/* ---- chunks in and out of the system ---- */

static struct slab_chunk *chunk_map(struct kmem_cache *s)
{
	size_t span = s->map_size + CHUNK_SIZE;
	char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	char *base, *end;
	struct slab_chunk *ch;

	if (raw == MAP_FAILED)
		return NULL;
	/* over-mapped by CHUNK_SIZE: trim to an aligned chunk */
	base = (char *)ALIGN((uintptr_t)raw, CHUNK_SIZE);
	end = base + s->map_size;
	if (base > raw)
		munmap(raw, base - raw);
	if (raw + span > end)
		munmap(end, raw + span - end);
	ch = (struct slab_chunk *)base;
	if (((uintptr_t)end - 1) >> VA_BITS) {
		munmap(base, s->map_size);	/* outside what the index covers */
		return NULL;
	}
	ch->cache = s;
	ch->carved = 0;
	ch->populated = 0;
	/* held by the caller, as if taken from the partial list */
	atomic_store_explicit(&ch->state, ST_MAKE(UNIT_NIL, 0, ST_LISTED), memory_order_relaxed);
	if (!index_set(s, ch, true)) {
		index_set(s, ch, false);
		munmap(base, s->map_size);
		return NULL;
	}
	atomic_fetch_add_explicit(&s->nr_chunks, 1, memory_order_relaxed);
	seam_count(nr_chunks, 1);
	return ch;
}

/* Called by whoever set ST_DEAD: nothing else can reach the chunk. */
static void chunk_unmap(struct kmem_cache *s, struct slab_chunk *ch)
{
	index_set(s, ch, false);
	munmap(ch, s->map_size);
	seam_count(nr_chunks, -1);
	atomic_fetch_sub_explicit(&s->nr_chunks, 1, memory_order_release);
}

/* ---- the holder's side ---- */

struct chain {
	struct llist_node *first, *last;
	int n;
};

static void chain_add(struct chain *c, struct llist_node *node)
{
	node->next = NULL;
	if (c->last)
		c->last->next = node;
	else
		c->first = node;
	c->last = node;
	c->n++;
}

/*
 * A chunk that keeps being carved into prefaults the pages of its next
 * POPULATE_UNITS units in one system call instead of taking a page fault
 * (microseconds each on a virtual machine) in nearly every allocation of a
 * large class that grows.  Not in a cache's only chunk before it carved
 * POPULATE_AFTER units: an allocator that takes a few objects keeps only
 * the pages it touched.  Kernels
 * before 5.14 refuse the call; the pages then fault in as before.
 */
#define POPULATE_UNITS	32
#define POPULATE_AFTER	16

static void chunk_populate(const struct kmem_cache *s, struct slab_chunk *ch, unsigned int upto)
{
	size_t page = s->page, start, end;

	if (s->stride * POPULATE_UNITS <= page ||
	    (ch->carved < POPULATE_AFTER &&
	     atomic_load_explicit(&s->nr_chunks, memory_order_relaxed) < 2))
		return;
	end = (size_t)(unit_at(s, ch, upto) - (char *)ch);
	if (end <= ch->populated)
		return;
	start = max((size_t)(unit_at(s, ch, ch->carved) - (char *)ch), ch->populated) & ~(page - 1);
	end = min(ALIGN(end + s->stride * POPULATE_UNITS, page), s->map_size);
	if (start < end)
		madvise((char *)ch + start, end - start, MADV_POPULATE_WRITE);
	ch->populated = end;
}

/*
 * Take up to `want` units from a held chunk: freed ones first (most recently
 * freed first, the warm ones), then never-carved ones.  One CAS: the chain
 * below a head read here can only grow above that head, never change.
 */
static void chunk_take(struct kmem_cache *s, struct slab_chunk *ch, int want, struct chain *out)
{
	uint64_t st = atomic_load_explicit(&ch->state, memory_order_acquire), next_st;
	unsigned int head, idx, n, carve;

	do {
		head = idx = ST_HEAD(st);
		for (n = 0; idx != UNIT_NIL && n < (unsigned int)want; n++)
			idx = atomic_load_explicit(unit_link(unit_at(s, ch, idx)), memory_order_relaxed);
		carve = min((unsigned int)want - n, s->nr_units - ch->carved);
		next_st = ST_MAKE(idx, ST_USED(st) + n + carve, st & ~(uint64_t)0xffffffff);
	} while (!atomic_compare_exchange_weak_explicit(&ch->state, &st, next_st,
							memory_order_acquire, memory_order_acquire));
	for (idx = head; n; n--) {
		char *unit = unit_at(s, ch, idx);

		idx = atomic_load_explicit(unit_link(unit), memory_order_relaxed);
		chain_add(out, (struct llist_node *)unit);
	}
	if (carve)
		chunk_populate(s, ch, ch->carved + carve);
	for (; carve; carve--)
		chain_add(out, (struct llist_node *)unit_at(s, ch, ch->carved++));
}

/*
 * The holder is done with a chunk: true if it goes back on `partial` (units
 * left), false if it was unlisted (every unit out) or unmapped.  Empty
 * chunks beyond the first one this pass saw (`*empties`) are unmapped.
 */
static bool chunk_settle(struct kmem_cache *s, struct slab_chunk *ch, int *empties)
{
	uint64_t st = atomic_load_explicit(&ch->state, memory_order_acquire), next_st;

	do {
		/* no unit out: nobody can free into it, the state is ours */
		if (!ST_USED(st)) {
			if ((*empties)++ == 0)
				return true;
			atomic_store_explicit(&ch->state, ST_DEAD, memory_order_relaxed);
			chunk_unmap(s, ch);
			return false;
		}
		if (ST_HEAD(st) != UNIT_NIL || ch->carved < s->nr_units)
			return true;
		/* every unit out: unlist, unless a free slipped one in */
		next_st = st & ~ST_LISTED;
	} while (!atomic_compare_exchange_weak_explicit(&ch->state, &st, next_st,
							memory_order_release, memory_order_acquire));
	return false;
}

/*
 * Give held chunks back to `partial`.  An exchange emptied it, so it is
 * often still empty and one CAS does.  Otherwise frees relisted chunks
 * meanwhile: take those too (held like ours, for a moment) and put them
 * in front, walking only them, never our list, which may hold every
 * chunk of the cache.  The caller's sweep check covers the hold.
 */
static void partial_put(struct kmem_cache *s, struct llist_node *first)
{
	struct llist_node *expected = NULL, *theirs;

	if (!first)
		return;
	while (!atomic_compare_exchange_strong_explicit(&s->partial.first, &expected, first,
							memory_order_release, memory_order_relaxed)) {
		theirs = llist_del_all(&s->partial);
		if (theirs) {
			llist_last(theirs)->next = first;
			first = theirs;
		}
		expected = NULL;
	}
}

/* Settle every chunk of a taken list; returns the ones to put back. */
static struct llist_node *settle_all(struct kmem_cache *s, struct llist_node *held, int *empties)
{
	struct llist_node *keep = NULL, *pos, *t;

	llist_for_each_safe(pos, t, held) {
		if (chunk_settle(s, container_of(pos, struct slab_chunk, node), empties)) {
			pos->next = keep;
			keep = pos;
		}
	}
	return keep;
}

/*
 * Unmap the empty chunks on `partial` but one, again while frees empty
 * chunks meanwhile.  `seq` is sweep_seq as read before the caller took
 * chunks from `partial`.  The seq_cst fences pair with the one in
 * kmem_cache_free(): of a free asking while a pass holds chunks, and that
 * pass putting them back, at least one sees the other (the count, or the
 * chunks on the list).
 */
static void partial_sweep(struct kmem_cache *s, unsigned long seq)
{
	for (;;) {
		atomic_thread_fence(memory_order_seq_cst);
		unsigned long now = atomic_load_explicit(&s->sweep_seq, memory_order_relaxed);
		int empties = 0;

		if (now == seq)
			return;
		seq = now;
		partial_put(s, settle_all(s, llist_del_all(&s->partial), &empties));
	}
}

int kmem_cache_alloc_bulk(struct kmem_cache *s, int n, struct llist_node **first,
			  struct llist_node **last)
{
	struct chain out = { NULL, NULL, 0 };
	struct llist_node *held, *pos, *rest = NULL;
	unsigned long seq = atomic_load_explicit(&s->sweep_seq, memory_order_relaxed);
	int empties = 0;

	n = fault_clamp(n);
	atomic_thread_fence(memory_order_seq_cst);
	held = n ? llist_del_all(&s->partial) : NULL;
	/* settle only what we took from; the rest goes back untouched */
	for (pos = held; pos && out.n < n; pos = pos->next)
		chunk_take(s, container_of(pos, struct slab_chunk, node), n - out.n, &out);
	if (pos) {
		struct llist_node **link = &held;

		while (*link != pos)
			link = &(*link)->next;
		*link = NULL;
		rest = pos;
	}
	held = settle_all(s, held, &empties);
	while (out.n < n) {
		struct slab_chunk *ch = chunk_map(s);

		if (!ch) {
			seam_count(nr_failed, 1);
			break;
		}
		chunk_take(s, ch, n - out.n, &out);
		if (chunk_settle(s, ch, &empties)) {
			ch->node.next = held;
			held = &ch->node;
		}
	}
	partial_put(s, held);
	partial_put(s, rest);
	partial_sweep(s, seq);
	seam_count(nr_allocs, out.n);
	*first = out.first;
	*last = out.last;
	return out.n;
}

void kmem_cache_free(struct kmem_cache *s, void *obj)
{
	struct slab_chunk *ch = chunk_of(obj);
	unsigned int idx = (unsigned int)(((char *)obj - (char *)ch - CHUNK_HDR) / s->stride);
	uint64_t st = atomic_load_explicit(&ch->state, memory_order_relaxed), next_st;
	unsigned int used;

	seam_count(nr_frees, 1);
	do {
		atomic_store_explicit(unit_link(obj), ST_HEAD(st), memory_order_relaxed);
		used = ST_USED(st) - 1;
		if (!(st & ST_LISTED) && !used)
			next_st = ST_DEAD;	/* the only unit out came back */
		else
			next_st = ST_MAKE(idx, used, ST_LISTED);
	} while (!atomic_compare_exchange_weak_explicit(&ch->state, &st, next_st,
							memory_order_acq_rel, memory_order_relaxed));
	if (next_st == ST_DEAD)
		chunk_unmap(s, ch);
	else if (!(st & ST_LISTED))
		llist_add(&ch->node, &s->partial);	/* we listed it: we push it */
	else if (!used)
		partial_sweep(s, atomic_fetch_add(&s->sweep_seq, 1));
}

/* ---- caches ---- */

struct kmem_cache *kmem_cache_create(size_t unit_size, unsigned int tag)
{
	/* 64-byte aligned: index entries keep the pointer shifted by 4 */
	struct kmem_cache *s = aligned_alloc(64, ALIGN(sizeof(*s), 64));
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	if (!s)
		return NULL;
	memset(s, 0, sizeof(*s));
	s->unit_size = unit_size;
	s->page = page;
	s->stride = ALIGN(max(unit_size, sizeof(struct llist_node)), 8);
	s->tag = tag;
	if (s->stride <= (CHUNK_SIZE - CHUNK_HDR) / 8) {
		s->map_size = CHUNK_SIZE;
		s->nr_units = min((CHUNK_SIZE - CHUNK_HDR) / s->stride, MAX_UNITS);
	} else {
		s->map_size = ALIGN(CHUNK_HDR + s->stride, page);
		s->nr_units = 1;
	}
	return s;
}

void kmem_cache_destroy(struct kmem_cache *s)
{
	int empties = 1;	/* keep none */

	if (!s)
		return;
	settle_all(s, llist_del_all(&s->partial), &empties);
	/* chunks with units out (leaked) keep the cache their entries name */
	if (!atomic_load_explicit(&s->nr_chunks, memory_order_acquire))
		free(s);
	else
		llist_add(&s->leaked, &graveyard);
}

void *vzalloc(size_t size)
{
	void *p;

	if (!fault_clamp(1))
		return NULL;
	/* reserve no swap for pages that may never be written */
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (p == MAP_FAILED) {
		seam_count(nr_failed, 1);
		return NULL;
	}
	/* a huge page would back 2 MiB at the first write, not the page written */
	madvise(p, size, MADV_NOHUGEPAGE);
	seam_count(nr_allocs, 1);
	return p;
}

void vfree(void *addr, size_t size)
{
	if (!addr)
		return;
	seam_count(nr_frees, 1);
	munmap(addr, size);
}
