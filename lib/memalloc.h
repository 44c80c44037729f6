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
 * "Callback" is a liburcu call_rcu thread running __free_by_rcu/__free_rcu.
 * Objects cross between owner and refill only through the two mailboxes and
 * the atomic lists; the owner's free_llist stays private.
 */
struct bpf_mem_cache {
	/* --- set at init, read-only afterwards: read by every thread --- */
	int unit_size;			/* object size incl. header (per-CPU: unit size) */
	int percpu_size;		/* 0, or size of the [node][pptr] holder */
	int low_watermark, high_watermark, batch;
	int cpu;			/* virtual CPU of this copy, SHARED_CPU for the shared one */
	unsigned int class_off;		/* offset of this class in a CPU's caches (bpf_mem_free) */
	struct bpfmem_objcg *objcg;	/* charged for every object the cache holds */
	struct bpf_mem_cache *shared;	/* the same class on the shared CPU */
	void *pcpu_base;		/* the allocator's per-CPU area of caches */
	unsigned int pcpu_stride;	/* and its stride (debug checks) */

	/* --- owner, inside active: the fast path touches this line only --- */
	struct __llist_head free_llist ____cacheline_aligned;
	_Atomic int free_cnt;		/* owner writes; refill and stats read racily */
	local_t active;			/* re-entry guard: owner and its handlers */
	_Atomic int shared_lock;	/* shared CPU only: stands in for ownership */
	bool prefilled;			/* init or the first explicit owner filled it */
	_Atomic(struct bpf_mem_cache *) tgt;	/* origin hint of the last free: owner writes, refill reads */
	_Atomic unsigned long trims;	/* owner increments (no RMW: single writer) */

	/*
	 * --- mailboxes.  refill_llist: the refill thread is the only producer
	 * and writes only into an empty box, the owner the only consumer, so
	 * neither needs an RMW; refill_cnt is written before the box is
	 * published and read by the owner before it empties the box.
	 * trim_llist: the owner adds trimmed objects with a CAS (it is the only
	 * producer, but the box may still be full); the refill thread and (when
	 * its list runs dry) the owner take it with an exchange. ---
	 */
	struct llist_head refill_llist ____cacheline_aligned;
	_Atomic int refill_cnt;
	struct llist_head trim_llist;

	/* --- multi-producer lists --- */
	struct llist_head free_llist_extra;	/* frees that found active held; refill drains */
	struct llist_head free_by_rcu;		/* *_free_rcu objects; refill or the callback takes all */
	/* filled (release) while !call_rcu_in_progress, emptied by the callback */
	struct llist_head waiting_for_gp;
	struct llist_node *waiting_for_gp_tail;	/* written before waiting_for_gp is published */
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

	struct irq_work refill_work;
	_Atomic bool draining;		/* destroy sets; refill and callbacks stop recycling */

	/* --- statistics, written on slow paths only --- */
	_Atomic unsigned long backend_allocs, backend_frees, refills;
};

struct bpf_mem_caches {
	struct bpf_mem_cache cache[NUM_CACHES];
};

/* Per-CPU strides of the two cache layouts: compile-time powers of two, so
 * the fast path finds its cache with a shift instead of a multiply.  The
 * per-CPU areas are allocated with exactly these copy sizes. */
#define CACHE_STRIDE	512
#define CACHES_STRIDE	4096
_Static_assert(sizeof(struct bpf_mem_cache) <= CACHE_STRIDE, "CACHE_STRIDE too small");
_Static_assert(sizeof(struct bpf_mem_caches) <= CACHES_STRIDE, "CACHES_STRIDE too small");

extern const int bpf_mem_sizes[NUM_CACHES] __hidden;

#endif /* BPFMEM_MEMALLOC_H */
