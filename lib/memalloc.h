/* SPDX-License-Identifier: MIT */
/*
 * The allocator's internal types: struct bpf_mem_cache with the owner of
 * every field written beside it.  Shared by memalloc.c and stats.c.
 */
#ifndef BPFMEM_MEMALLOC_H
#define BPFMEM_MEMALLOC_H

#include <bpfmem.h>

#include "kernel/compiler.h"
#include "kernel/irq_work.h"
#include "kernel/llist.h"
#include "kernel/local.h"
#include "kernel/percpu.h"
#include "kernel/rcu.h"

#define NUM_CACHES		11
#define LLIST_NODE_SZ		sizeof(struct llist_node)
#define BPF_MEM_ALLOC_SIZE_MAX	BPFMEM_ALLOC_SIZE_MAX

/* ma->magic: initialised, and which kind (checked by every entry point). */
#define BPFMEM_MAGIC_ANY	0x62706d61u	/* any-size: ma->caches */
#define BPFMEM_MAGIC_FIXED	0x62706d66u	/* fixed-size: ma->cache */

/*
 * Who touches what.  "Owner" is the thread owning the virtual CPU this copy
 * belongs to, plus its signal handlers, and only inside `active` (for the
 * shared CPU: inside `shared_lock`).  "Refill" is the refill thread running
 * this cache's refill_work; a work item never runs concurrently with itself.
 * "Callback" is the thread running RCU callbacks (__free_by_rcu, __free_rcu
 * on the grace-period thread of call_rcu_hurry, __free_rcu_tasks_trace on a
 * liburcu call_rcu thread).
 * "Anyone" is any thread or signal handler.  The owner's free_llist stays
 * private; objects reach it from elsewhere only through the reuse slots.
 */

/* Trims a cache parks for its owner, at most, per size class: see trim(). */
#define TRIM_PARK_OBJS	128

/* Ready chains of objects for the owner: see reuse_put()/reuse_take(). */
#define REUSE_SLOTS	4
#define REUSE_BUSY	((struct llist_node *)1)

struct bpf_mem_cache {
	/* --- owner, inside active: all the fast paths touch, one line --- */
	struct __llist_head free_llist;
	_Atomic int free_cnt;		/* owner writes; refill and stats read racily */
	int alloc_floor;		/* alloc stays on the fast path while free_cnt > this */
	int free_ceil;			/* free stays on the fast path while free_cnt < this */
	local_t active;			/* re-entry guard: owner and its handlers */
	/* origin hint of the last free (the kernel's tgt): written by every
	 * thread that frees here (one owner, or many on the shared CPU),
	 * read by the owner's trim and by refill/callbacks; any value it ever
	 * held is a cache of the same class, so a racy read is harmless */
	_Atomic(struct bpf_mem_cache *) tgt;

	/* --- set at init (owned CPUs: at first use), read-only afterwards.
	 * unit_size is published last (release): 0 means "not set up" --- */
	_Atomic int unit_size;		/* object size incl. header (per-CPU: unit size) */
	int percpu_size;		/* 0, or size of the [node][pptr] holder */
	int low_watermark, high_watermark, batch;
	int cpu;			/* virtual CPU of this copy, SHARED_CPU for the shared one */
	unsigned int class_off;		/* offset of this class in a CPU's caches (debug checks) */
	struct bpfmem_objcg *objcg;	/* charged for every object the cache holds */
	struct bpf_mem_cache *shared;	/* the same class on the shared CPU */
	void *pcpu_base;		/* the allocator's per-CPU area of caches */

	/* --- owner --- */
	_Atomic int shared_lock;	/* shared CPU only: stands in for ownership */
	int reuse_next;			/* owner, inside active: reuse_take() starts here */
	_Atomic unsigned long trims;	/* owner increments (no RMW: single writer per lock) */
	/* owner, inside active (owned CPUs only): *_free_rcu objects not yet
	 * handed on (fewer than a batch, but while the stage reads rcu_out),
	 * published to rcu_out in batches and whenever the owner takes a slow
	 * path; `last` is valid while `first` is not NULL */
	int rcu_local_cnt;
	int rcu_out_cnt;		/* see rcu_out */
	struct llist_node *rcu_local_first, *rcu_local_last;

	/* --- chains ready for the owner: trims of any cache whose tgt is this
	 * one, refill batches, objects whose RCU grace period ended.  Slot i
	 * is reuse_chain[i]: NULL, free.  REUSE_BUSY: claimed by a producer
	 * (anyone) with a CAS from NULL, which writes reuse_cnt[i] and then
	 * publishes the chain (release).  A chain: NULL-terminated,
	 * reuse_cnt[i] objects.  The owner takes it: exchange to REUSE_BUSY
	 * (acquire), read the count, release store of NULL.  The RCU stage
	 * and another CPU's trim (any context) may also claim a chain with a
	 * CAS from it to REUSE_BUSY, read the count then, and publish their
	 * own in front of it (reuse_merge()) --- */
	_Atomic(struct llist_node *) reuse_chain[REUSE_SLOTS] ____cacheline_aligned;
	_Atomic int reuse_cnt[REUSE_SLOTS];
	/* the owner's *_free_rcu batches on their way to the RCU stage, one
	 * chain at a time, tail (rcu_out_tail) and count (rcu_out_cnt) with
	 * it, so that nobody walks them: a walk from another core would pull
	 * every line away from the owner, which reuses them right after the
	 * grace period.  The owner fills tail and count while rcu_out is NULL
	 * (seen with acquire, or made so by its own CAS from the chain it
	 * published last, to add to it), then publishes the chain (release).
	 * The RCU stage (one at a time, under call_rcu_in_progress) claims it
	 * with a CAS to REUSE_BUSY (acquire), reads them, stores NULL
	 * (release).  Neither CAS can be fooled by ABA: only the owner
	 * publishes, and it knows what it published last */
	_Atomic(struct llist_node *) rcu_out;
	struct llist_node *rcu_out_tail;

	/* --- multi-producer lists, exchange-only consumers --- */
	/* trims past TRIM_PARK_MAX parked ones (see `parked`): the owner adds
	 * (CAS), the refill takes all and sends them through the grace periods */
	struct llist_head trim_llist;
	struct llist_head free_llist_extra;	/* frees that found active held; refill drains */
	struct llist_head free_by_rcu;		/* *_free_rcu objects of anyone but the owner
						 * (and its flush while the stage reads rcu_out),
						 * one by one; the RCU stage takes all */
	/* filled (release) while call_rcu_in_progress, emptied by the callback;
	 * tail and count are written before the list is published */
	struct llist_head waiting_for_gp;
	struct llist_node *waiting_for_gp_tail;
	int waiting_for_gp_cnt;
	_Atomic int call_rcu_in_progress;	/* refill sets, __free_by_rcu clears */
	struct rcu_head rcu;

	/* --- under ttrace_lock (refill, callbacks, destroy) --- */
	struct __llist_head free_by_rcu_ttrace;	/* trimmed objects: recyclable until the GP */
	struct __llist_head waiting_for_gp_ttrace;	/* waiting for a tasks-trace GP: still recyclable */
	_Atomic int call_rcu_ttrace_in_progress;
	struct rcu_head rcu_ttrace;

	/* RCU callbacks of this cache queued and not yet finished: +1 before
	 * each call_rcu, -1 as the callback's last access to the cache, so
	 * destroy frees the caches only at 0 */
	_Atomic int callbacks_queued;
	/* *_free_rcu objects of this cache before their RCU grace period
	 * ended: + as they join rcu_out or free_by_rcu (the owner a batch at a time,
	 * anyone else one by one), - by __free_by_rcu.  Racy for readers: the
	 * owner's refill only compares it with a bound.  A fork child may keep
	 * a batch lost with a vanished thread counted: its owner then waits
	 * for the refill thread more often, as before inline refills */
	_Atomic int rcu_pending;

	struct irq_work refill_work;
	_Atomic bool draining;		/* destroy sets; refill and callbacks stop recycling */
	/* objects on `parked`: the owner writes, stats read racily */
	_Atomic int parked_cnt;

	/* --- statistics, written on slow paths only --- */
	_Atomic unsigned long backend_allocs, backend_frees, refills;
	_Atomic unsigned long inline_refills;	/* owner increments (no RMW, as trims) */

	/* template only, set at init, read-only afterwards: the backend slab
	 * of this size class; every copy reaches it as shared->slab (NULL for
	 * per-CPU objects, which keep kmalloc and __alloc_percpu) */
	struct kmem_cache *slab;

	/* owner, inside the critical section (NULL-terminated, parked_cnt
	 * long): trims of its own objects (or of ones borrowed from the shared
	 * CPU) that found every reuse slot of their tgt taken, taken back
	 * whole, count included, when the list runs dry (trims past
	 * TRIM_PARK_MAX go to trim_llist instead; another CPU's objects join
	 * its ready chains first, see trim()); and the rest of a chain too
	 * long to take at once, taken in pieces (take_ready) */
	struct llist_node *parked;
};

struct bpf_mem_caches {
	struct bpf_mem_cache cache[NUM_CACHES];
};

/* The distance between two CPUs' copies of any cache area (PCPU_STRIDE):
 * a compile-time power of two, so the fast path finds its cache with a
 * shift instead of a multiply. */
_Static_assert(sizeof(struct bpf_mem_caches) <= PCPU_STRIDE, "PCPU_STRIDE too small");

/*
 * The layout <bpfmem.h> freezes for inlined fast paths (BPFMEM_INLINE): a
 * change here that breaks one of these must bump BPFMEM_FAST_ABI, which
 * renames the thread variable the inlined code links against.
 */
#define FAST_SAME(lib, pub) \
	(offsetof(struct bpf_mem_cache, lib) == offsetof(struct bpfmem_fast_cache, pub) && \
	 sizeof(((struct bpf_mem_cache *)0)->lib) == sizeof(((struct bpfmem_fast_cache *)0)->pub))
_Static_assert(FAST_SAME(free_llist.first, first) && FAST_SAME(free_cnt, cnt) &&
	       FAST_SAME(alloc_floor, alloc_floor) && FAST_SAME(free_ceil, free_ceil) &&
	       FAST_SAME(active, active) && FAST_SAME(tgt, tgt), "BPFMEM_FAST_ABI: cache fields");
_Static_assert(sizeof(struct bpf_mem_cache) == BPFMEM_FAST_CLASS_SIZE &&
	       PCPU_STRIDE == BPFMEM_FAST_CPU_STRIDE && (PCPU_STRIDE & (PCPU_STRIDE - 1)) == 0,
	       "BPFMEM_FAST_ABI: class layout");
_Static_assert(LLIST_NODE_SZ == BPFMEM_FAST_HDR, "BPFMEM_FAST_ABI: object header");
/* the thread states' guard slots (kernel/cpu.h): apart, within one class */
_Static_assert(sizeof(struct bpfmem_fast_cache) <= CPU_STATE_SLOT &&
	       -CPU_STATE_EXITING * CPU_STATE_SLOT <= BPFMEM_FAST_CLASS_SIZE,
	       "BPFMEM_FAST_ABI: guard slots");
#undef FAST_SAME

extern const int bpf_mem_sizes[NUM_CACHES] __hidden;

#if BPFMEM_TEST_SEAMS
/* Test build only: called by an inline refill while it counts as in
 * flight, and by fork preparation before it waits for another thread's. */
extern void (*_Atomic memalloc_seam_inline_refill)(void) __hidden;
extern void (*_Atomic memalloc_seam_fork_waits)(void) __hidden;
/* Test build only: called while a take holds a piece in its own variables. */
extern void (*_Atomic memalloc_seam_take)(void) __hidden;
/* Test build only: the bytes of trims a cache parks for its owner. */
extern _Atomic size_t memalloc_seam_trim_park_bytes __hidden;
#endif

/*
 * The *_free_rcu objects of a cache on their way through an RCU grace
 * period, at most, before its owner waits for them rather than refilling
 * from the backend (see refill_inline()): what a grace period gives back
 * is the pool a stream of them circulates in.  A stream runs at tens of
 * millions of objects a second and an object comes back one to two grace
 * periods (100 us apart at the least, rcu_hurry.c) after its free.
 * Measured with bench/'s free_rcu loop (2M objects of 64 bytes, 5 runs,
 * Mobj/s median): 256 KiB 17.5, 1 MiB 48.7, 4 MiB 57.9 (urcu-naive ~7):
 * 1 MiB keeps most of the rate at a quarter of the memory a cache may
 * hold in flight.  It bounds, it does not reserve.
 */
#define RCU_PENDING_BYTES	(1024 * 1024)
#define RCU_PENDING_MAX(c)						\
	max(REUSE_SLOTS * (c)->high_watermark,				\
	    (int)(RCU_PENDING_BYTES /					\
		  atomic_load_explicit(&(c)->unit_size, memory_order_relaxed)))

/* Owner: its *_free_rcu objects not back yet, the private batch included. */
static inline int rcu_owned_in_flight(struct bpf_mem_cache *c)
{
	return atomic_load_explicit(&c->rcu_pending, memory_order_relaxed) + c->rcu_local_cnt;
}

/* Objects waiting in c's ready chains: exact for the owner (only it
 * empties a slot), racy for anyone else. */
static inline int reuse_ready(struct bpf_mem_cache *c)
{
	int n = 0;

	for (int i = 0; i < REUSE_SLOTS; i++) {
		struct llist_node *chain = atomic_load_explicit(&c->reuse_chain[i],
								memory_order_acquire);

		if (chain && chain != REUSE_BUSY)
			n += atomic_load_explicit(&c->reuse_cnt[i], memory_order_relaxed);
	}
	return n;
}

/* Offset of size class `idx` in a CPU's struct bpf_mem_caches. */
#define CACHE_OFF(idx) ((size_t)(idx) * sizeof(struct bpf_mem_cache))

/*
 * The one place per-CPU caches are addressed: the cache at offset `off`
 * (its class, 0 for a fixed-size allocator) of virtual CPU `cpu` (SHARED_CPU
 * included) in the per-CPU area `pcpu` (pcpu_area_alloc).
 */
static __always_inline struct bpf_mem_cache *cache_on(const void *pcpu, size_t off, int cpu)
{
	return (struct bpf_mem_cache *)pcpu_area_ptr(pcpu, cpu, off);
}

#endif /* BPFMEM_MEMALLOC_H */
