/* SPDX-License-Identifier: MIT */
/*
 * The BPF memory allocator, as in the kernel's kernel/bpf/memalloc.c,
 * written against the emulated kernel facilities in kernel/.
 *
 * Every virtual CPU has its own caches: 11 size classes for the any-size
 * allocator, one for a fixed-size one.  Allocation pops the head of the
 * caller's free_llist and free pushes onto it (LIFO), guarded only by the
 * per-cache `active` counter, so both run in any context: a signal handler
 * that interrupts the same thread inside the allocator finds `active` held,
 * and then alloc returns NULL while free parks the object on the atomic
 * free_llist_extra.  Every object carries an 8-byte header in front of the
 * pointer handed out: while the object is free it is the list link, while
 * it is allocated it names the cache that handed it out, so bpf_mem_free()
 * needs no size and trimmed objects go back to their origin cache (tgt).
 *
 * Below the low watermark the allocation raises refill_work (the kernel's
 * irq_work): the refill thread allocates a batch.  Above the high watermark
 * the free cuts the most recently freed objects down to the middle and
 * hands them to their origin cache (tgt) for immediate reuse, as the
 * kernel's refill recycles them; past a bound they go through an RCU
 * tasks-trace grace period (then an RCU one unless implied) back to the
 * backend, still recyclable until then, so memory stays type-stable for RCU
 * readers.  Objects freed with *_free_rcu rejoin the reuse path of their
 * origin cache in whole batches once their RCU grace period has ended.
 *
 * Unlike irq_work, the refill thread runs at the same time as the owner, on
 * another core, and only when the scheduler lets it.  So nothing waits for
 * it: every producer (the refill thread, a trim on another CPU, an RCU
 * callback) hands a finished chain with its count to the owner through one
 * of a few reuse slots, which the owner takes in O(1) when its private
 * free_llist runs empty; the refill thread only keeps a batch ready in them.
 * An owner that finds no chain ready runs the refill itself, from the
 * backend, which is lock-free and async-signal-safe like the kernel's
 * kmalloc(GFP_NOWAIT), as irq_work runs on the owner's own CPU.
 * The fast path (pop or push on a list that needs no refill or trim) has no
 * lock, no syscall and no atomic read-modify-write.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include <bpfmem.h>
#include "memalloc.h"
#include "debug.h"
#include "kernel/bug.h"
#include "kernel/cpu.h"
#include "kernel/init.h"
#include "kernel/memcg.h"
#include "kernel/percpu.h"
#include "kernel/slab.h"

const int bpf_mem_sizes[NUM_CACHES] = { 96, 192, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096 };

#define CLS(idx)	((unsigned short)CACHE_OFF(idx))

/*
 * The size classes, exported for inlined calls (<bpfmem.h>): [i] holds the
 * offset of the class of sizes 8 * i - 7 .. 8 * i, header included.  The
 * library reads it under a local name, a PC-relative address: the exported
 * one is reached through the GOT, as a program may hold a copy of it.
 */
static const unsigned short class_off_of[BPF_MEM_ALLOC_SIZE_MAX / 8 + 1] = {
	[1 ... 2] = CLS(2),		/* 16 */
	[3 ... 4] = CLS(3),		/* 32 */
	[5 ... 8] = CLS(4),		/* 64 */
	[9 ... 12] = CLS(0),		/* 96 */
	[13 ... 16] = CLS(5),		/* 128 */
	[17 ... 24] = CLS(1),		/* 192 */
	[25 ... 32] = CLS(6),		/* 256 */
	[33 ... 64] = CLS(7),		/* 512 */
	[65 ... 128] = CLS(8),		/* 1024 */
	[129 ... 256] = CLS(9),		/* 2048 */
	[257 ... 512] = CLS(10),	/* 4096 */
};
#undef CLS
extern __public const unsigned short bpfmem_fast_abi3_class_off[BPF_MEM_ALLOC_SIZE_MAX / 8 + 1]
	__attribute__((alias("class_off_of")));

static __always_inline int bpf_mem_cache_idx(size_t size)
{
	if (!size || size > BPF_MEM_ALLOC_SIZE_MAX)
		return -1;
	return (int)(class_off_of[(size + 7) / 8] / CACHE_OFF(1));
}

/*
 * Serialises the tasks-trace lists of every cache: the refill thread, RCU
 * callbacks and destroy all move objects through them, none of them in a
 * fast path or a signal handler.
 */
static pthread_mutex_t ttrace_lock = PTHREAD_MUTEX_INITIALIZER;

/* Live allocators, for fork(); under ma_lock. */
static pthread_mutex_t ma_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bpf_mem_alloc *ma_list;

/* ---- the backend side: objects in and out of the system allocator ---- */

static size_t obj_charge(const struct bpf_mem_cache *c)
{
	if (c->percpu_size)
		return c->percpu_size + pcpu_footprint(c->unit_size);
	return c->unit_size;
}

/*
 * Up to `n` objects from the backend, chained *first .. *last: one call of
 * the class's slab (the template's) for the whole batch; per-CPU objects
 * ([node][pptr] holder + per-CPU area) one by one from kmalloc and
 * __alloc_percpu.  Returns how many.
 */
static int __alloc_bulk(struct bpf_mem_cache *c, int n, struct llist_node **first,
			struct llist_node **last)
{
	size_t charge = obj_charge(c);
	int got = 0;

	while (n && obj_cgroup_charge(c->objcg, (size_t)n * charge))
		n--;
	if (c->percpu_size) {
		*first = *last = NULL;
		for (; got < n; got++) {
			void **obj = kmalloc(c->percpu_size);
			void *pptr = obj ? __alloc_percpu(c->unit_size) : NULL;

			if (!pptr) {
				kfree(obj);
				break;
			}
			obj[1] = pptr;
			((struct llist_node *)obj)->next = *first;
			*first = (struct llist_node *)obj;
			if (!*last)
				*last = *first;
		}
	} else if (c->shared->slab && n) {
		got = kmem_cache_alloc_bulk(c->shared->slab, n, first, last);
	}
	if (got < n)
		obj_cgroup_uncharge(c->objcg, (size_t)(n - got) * charge);
	atomic_fetch_add_explicit(&c->backend_allocs, got, memory_order_relaxed);
	for (struct llist_node *pos = got ? *first : NULL; pos; pos = pos->next)
		debug_poison(c, pos);
	return got;
}

static void *__alloc(struct bpf_mem_cache *c)
{
	struct llist_node *first, *last;

	return __alloc_bulk(c, 1, &first, &last) ? first : NULL;
}

static void free_one(struct bpf_mem_cache *c, void *obj)
{
	if (c->percpu_size) {
		free_percpu(((void **)obj)[1]);
		kfree(obj);
	} else {
		kmem_cache_free(c->shared->slab, obj);
	}
	obj_cgroup_uncharge(c->objcg, obj_charge(c));
	atomic_fetch_add_explicit(&c->backend_frees, 1, memory_order_relaxed);
}

static void free_all(struct bpf_mem_cache *c, struct llist_node *llnode)
{
	struct llist_node *pos, *t;

	llist_for_each_safe(pos, t, llnode)
		free_one(c, pos);
}

/* At destroy, for each class's template, which holds the class's slab. */
static void destroy_slab(struct bpf_mem_cache *c, struct bpf_mem_cache *tmpl, void *arg)
{
	(void)tmpl;
	(void)arg;
	kmem_cache_destroy(c->slab);
}

/* ---- reuse slots (see reuse_chain in struct bpf_mem_cache) ---- */

/*
 * Anyone: hand a NULL-terminated chain of `cnt` objects to c's owner.
 * False when every slot is taken; the caller then keeps the chain.  A
 * producer that a signal handler interrupts between the claim and the
 * publication only makes its slot unavailable for that long.
 */
static bool reuse_put(struct bpf_mem_cache *c, struct llist_node *chain, int cnt)
{
	for (int i = 0; i < REUSE_SLOTS; i++) {
		struct llist_node *free_slot = NULL;

		if (atomic_load_explicit(&c->reuse_chain[i], memory_order_relaxed))
			continue;
		/* acquire: the owner's read of the previous cnt is done */
		if (!atomic_compare_exchange_strong_explicit(&c->reuse_chain[i], &free_slot,
							     REUSE_BUSY, memory_order_acquire,
							     memory_order_relaxed))
			continue;
		atomic_store_explicit(&c->reuse_cnt[i], cnt, memory_order_relaxed);
		/* release: the chain's links and cnt before the chain */
		atomic_store_explicit(&c->reuse_chain[i], chain, memory_order_release);
		return true;
	}
	return false;
}

/*
 * Anyone (the RCU stage, a trim in any context): every slot taken, add the
 * chain first..last in front of a ready one, if both come to at most
 * `bound` objects.  The producer's CAS from the chain to REUSE_BUSY and the
 * owner's exchange in reuse_take() decide who gets it.  A CAS that succeeds
 * on a head that left the slot and came back (ABA) is harmless: holding
 * BUSY, the producer reads the count then, and links in front of the head
 * the slot holds then.  False: the caller keeps the chain.
 */
static bool reuse_merge(struct bpf_mem_cache *c, struct llist_node *first,
			struct llist_node *last, int cnt, int bound)
{
	for (int i = 0; i < REUSE_SLOTS; i++) {
		struct llist_node *ready = atomic_load_explicit(&c->reuse_chain[i],
								memory_order_relaxed);
		int n;

		if (!ready || ready == REUSE_BUSY ||
		    cnt + atomic_load_explicit(&c->reuse_cnt[i], memory_order_relaxed) > bound)
			continue;
		/* acquire: the chain and its count, as the owner sees them */
		if (!atomic_compare_exchange_strong_explicit(&c->reuse_chain[i], &ready,
							     REUSE_BUSY, memory_order_acquire,
							     memory_order_relaxed))
			continue;
		n = atomic_load_explicit(&c->reuse_cnt[i], memory_order_relaxed);
		if (cnt + n <= bound) {
			last->next = ready;
			atomic_store_explicit(&c->reuse_cnt[i], cnt + n, memory_order_relaxed);
			ready = first;
		}
		atomic_store_explicit(&c->reuse_chain[i], ready, memory_order_release);
		if (ready == first)
			return true;
	}
	return false;
}

/* Owner: take one ready chain, or NULL.  O(1): the count comes with it. */
static struct llist_node *reuse_take(struct bpf_mem_cache *c, int *cnt)
{
	/* Round robin from the slot after the last one taken: producers fill
	 * the first free slot, so scanning from 0 would let refill batches
	 * landing in slot 0 again and again starve a chain waiting in a later
	 * slot.  This way every published chain is taken within REUSE_SLOTS
	 * takes. */
	for (int k = 0; k < REUSE_SLOTS; k++) {
		int i = (c->reuse_next + k) % REUSE_SLOTS;
		struct llist_node *chain = atomic_load_explicit(&c->reuse_chain[i],
								memory_order_relaxed);

		if (!chain || chain == REUSE_BUSY)
			continue;
		/* exchange, not a load: reuse_merge() may take the chain away
		 * under us.  BUSY keeps the slot ours while we read the count
		 * (acquire: the chain and the count published with it). */
		chain = atomic_exchange_explicit(&c->reuse_chain[i], REUSE_BUSY,
						 memory_order_acquire);
		if (chain == REUSE_BUSY)
			continue;	/* a producer's, which will publish over ours */
		if (chain)
			*cnt = atomic_load_explicit(&c->reuse_cnt[i], memory_order_relaxed);
		/* release: a producer that claims the slot next writes cnt after
		 * our read of it */
		atomic_store_explicit(&c->reuse_chain[i], NULL, memory_order_release);
		if (!chain)
			continue;
		c->reuse_next = (i + 1) % REUSE_SLOTS;
		return chain;
	}
	return NULL;
}

static bool reuse_has_free_slot(struct bpf_mem_cache *c)
{
	for (int i = 0; i < REUSE_SLOTS; i++)
		if (!atomic_load_explicit(&c->reuse_chain[i], memory_order_relaxed))
			return true;
	return false;
}

/*
 * The per-cache critical section.  Owned CPUs: the `active` counter, as in
 * the kernel.  The shared CPU: a spinlock between threads, plus a per-thread
 * note of the shared cache being entered so that a signal handler on the
 * same thread sees re-entry instead of spinning on its own thread's lock.
 * A thread never waits while it holds a shared lock (a handler that
 * interrupted a shared section only tries once): otherwise two threads whose
 * handlers wait for each other's locks livelock under a steady signal rate.
 * Other waits are bounded too; giving up behaves as on re-entry (alloc NULL,
 * free to the extra list).
 */
static __tls_ie struct bpf_mem_cache *shared_entered;

#define SHARED_SPINS	64
#define SHARED_YIELDS	256

static bool shared_lock_acquire(struct bpf_mem_cache *c, bool may_wait)
{
	int tries = may_wait ? SHARED_SPINS + SHARED_YIELDS : 1;

	for (int i = 0; i < tries; i++) {
		int unlocked = 0;

		if (atomic_compare_exchange_weak_explicit(&c->shared_lock, &unlocked, 1,
							  memory_order_acquire,
							  memory_order_relaxed))
			return true;
		if (i >= SHARED_SPINS)
			sched_yield();
	}
	return false;
}

struct cache_guard {
	bool entered;
	struct bpf_mem_cache *prev;	/* shared CPU: the outer shared cache of this thread */
};

static __always_inline struct cache_guard cache_enter(struct bpf_mem_cache *c, bool shared)
{
	struct cache_guard g = { .prev = NULL };

	if (!shared) {
		g.entered = local_inc_return(&c->active) == 1;
		return g;
	}
	g.prev = shared_entered;
	if (g.prev == c) {
		g.entered = false;
		return g;
	}
	shared_entered = c;
	barrier();
	g.entered = shared_lock_acquire(c, g.prev == NULL);
	return g;
}

static __always_inline void cache_exit(struct bpf_mem_cache *c, bool shared, struct cache_guard g)
{
	if (!shared) {
		local_dec(&c->active);
		return;
	}
	if (g.prev == c)
		return;
	if (g.entered)
		atomic_store_explicit(&c->shared_lock, 0, memory_order_release);
	barrier();
	shared_entered = g.prev;
}

static __always_inline int free_cnt_add(struct bpf_mem_cache *c, int delta)
{
	int cnt = atomic_load_explicit(&c->free_cnt, memory_order_relaxed) + delta;

	atomic_store_explicit(&c->free_cnt, cnt, memory_order_relaxed);
	return cnt;
}

/* ---- RCU stages ---- */

/* Caches with a callback in flight, either stage: bpfmem_rcu_barrier() waits
 * until this drops to zero. */
static _Atomic long rcu_stages_in_flight;

static bool stage_start(_Atomic int *in_progress)
{
	if (atomic_exchange_explicit(in_progress, 1, memory_order_acq_rel))
		return false;
	atomic_fetch_add_explicit(&rcu_stages_in_flight, 1, memory_order_relaxed);
	return true;
}

static void stage_end(_Atomic int *in_progress)
{
	atomic_store_explicit(in_progress, 0, memory_order_release);
	atomic_fetch_sub_explicit(&rcu_stages_in_flight, 1, memory_order_release);
}

static void callback_queued(struct bpf_mem_cache *c)
{
	atomic_fetch_add_explicit(&c->callbacks_queued, 1, memory_order_relaxed);
}

/* The last access a callback makes to its cache. */
static void callback_done(struct bpf_mem_cache *c)
{
	atomic_fetch_sub_explicit(&c->callbacks_queued, 1, memory_order_release);
}

/* ---- refill work: runs on the refill thread ---- */

static void add_to_chain(struct llist_node **head, struct llist_node **tail,
			 struct llist_node *obj)
{
	obj->next = *head;
	*head = obj;
	if (!*tail)
		*tail = obj;
}

static void enque_to_free_and_call(struct bpf_mem_cache *tgt, struct llist_node *first,
				   struct llist_node *last);

/* Up to `cnt` objects from the tasks-trace lists, onto *head..*tail. */
static int take_ttrace(struct bpf_mem_cache *c, int cnt, struct llist_node **head,
		       struct llist_node **tail)
{
	struct llist_node *pos;
	int i = 0;

	pthread_mutex_lock(&ttrace_lock);
	while (i < cnt && (pos = __llist_del_first(&c->free_by_rcu_ttrace))) {
		add_to_chain(head, tail, pos);
		i++;
	}
	while (i < cnt && (pos = __llist_del_first(&c->waiting_for_gp_ttrace))) {
		add_to_chain(head, tail, pos);
		i++;
	}
	pthread_mutex_unlock(&ttrace_lock);
	return i;
}

/*
 * Gather up to `cnt` objects: first the ones re-entrant frees left on
 * free_llist_extra, then trimmed objects still waiting for a tasks-trace
 * grace period (type-stable reuse), only then the backend.  `direct` (the
 * caller holds the cache: init, or an explicit attach inside `active`)
 * fills free_llist itself; otherwise the batch goes to a reuse slot.
 */
static void alloc_bulk(struct bpf_mem_cache *c, int cnt, bool direct)
{
	struct llist_node *head = NULL, *tail = NULL, *pos, *t;
	int i = 0;

	llist_for_each_safe(pos, t, llist_del_all(&c->free_llist_extra)) {
		add_to_chain(&head, &tail, pos);
		i++;
	}
	if (i < cnt)
		i += take_ttrace(c, cnt - i, &head, &tail);
	if (i < cnt) {
		struct llist_node *first, *last;
		int n = __alloc_bulk(c, cnt - i, &first, &last);

		if (n) {
			last->next = head;
			head = first;
			if (!tail)
				tail = last;
			i += n;
		}
	}
	if (!head)
		return;
	atomic_fetch_add_explicit(&c->refills, 1, memory_order_relaxed);
	if (direct) {
		tail->next = c->free_llist.first;
		c->free_llist.first = head;
		free_cnt_add(c, i);
		return;
	}
	/* every slot filled meanwhile: the owner has plenty; keep the objects
	 * recyclable on the tasks-trace path */
	if (!reuse_put(c, head, i))
		enque_to_free_and_call(c, head, tail);
}

static void __free_rcu_tasks_trace(struct rcu_head *head);

/* Called with ttrace_lock held, `in_progress` already set: start the
 * tasks-trace grace period of everything on free_by_rcu_ttrace. */
static void ttrace_stage_queue(struct bpf_mem_cache *c)
{
	WARN_ON_ONCE(c->waiting_for_gp_ttrace.first);
	c->waiting_for_gp_ttrace.first = __llist_del_all(&c->free_by_rcu_ttrace);
	/* sleepable readers first; the callback adds an RCU GP if not implied */
	callback_queued(c);
	call_rcu_tasks_trace(&c->rcu_ttrace, __free_rcu_tasks_trace);
}

/*
 * Both grace periods are over for waiting_for_gp_ttrace: free it.  What
 * batched up behind this grace period starts the next one now (the kernel
 * waits for the next refill; a process may not have one).  The decision
 * and the end of the stage happen under ttrace_lock, where producers add
 * and try to start the stage: a producer either sees the stage in progress
 * and is picked up here, or starts the next stage itself.
 */
static void free_rcu_stage(struct bpf_mem_cache *c)
{
	struct llist_node *llnode;

	pthread_mutex_lock(&ttrace_lock);
	llnode = __llist_del_all(&c->waiting_for_gp_ttrace);
	if (c->free_by_rcu_ttrace.first && !atomic_load(&c->draining))
		ttrace_stage_queue(c);
	else
		stage_end(&c->call_rcu_ttrace_in_progress);
	pthread_mutex_unlock(&ttrace_lock);
	free_all(c, llnode);
}

static void __free_rcu(struct rcu_head *head)
{
	struct bpf_mem_cache *c = container_of(head, struct bpf_mem_cache, rcu_ttrace);

	rcu_callback_begin(head);
	free_rcu_stage(c);
	rcu_callback_end();
	callback_done(c);
}

static void __free_rcu_tasks_trace(struct rcu_head *head)
{
	struct bpf_mem_cache *c = container_of(head, struct bpf_mem_cache, rcu_ttrace);

	rcu_trace_callback_begin(head);
	/* When the tasks-trace grace period implies an RCU one, free now. */
	if (rcu_trace_implies_rcu_gp()) {
		free_rcu_stage(c);
	} else {
		callback_queued(c);
		call_rcu_hurry(head, __free_rcu);
	}
	rcu_callback_end();
	callback_done(c);
}

/* Called with ttrace_lock held.  Returns objects to free once it is dropped. */
static struct llist_node *do_call_rcu_ttrace(struct bpf_mem_cache *c)
{
	if (!stage_start(&c->call_rcu_ttrace_in_progress)) {
		/* one callback in flight; the rest waits on free_by_rcu_ttrace,
		 * unless nobody will come back for it */
		if (unlikely(atomic_load(&c->draining)))
			return __llist_del_all(&c->free_by_rcu_ttrace);
		return NULL;
	}
	if (unlikely(atomic_load(&c->draining))) {
		struct llist_node *llnode = __llist_del_all(&c->free_by_rcu_ttrace);

		stage_end(&c->call_rcu_ttrace_in_progress);
		return llnode;
	}
	ttrace_stage_queue(c);
	return NULL;
}

static void enque_to_free_and_call(struct bpf_mem_cache *tgt, struct llist_node *first,
				   struct llist_node *last)
{
	struct llist_node *dead;

	pthread_mutex_lock(&ttrace_lock);
	last->next = tgt->free_by_rcu_ttrace.first;
	tgt->free_by_rcu_ttrace.first = first;
	dead = do_call_rcu_ttrace(tgt);
	pthread_mutex_unlock(&ttrace_lock);
	free_all(tgt, dead);
}

static struct bpf_mem_cache *origin_hint(struct bpf_mem_cache *c)
{
	struct bpf_mem_cache *tgt = atomic_load_explicit(&c->tgt, memory_order_relaxed);

	WARN_ON_ONCE(tgt->unit_size != c->unit_size || tgt->percpu_size != c->percpu_size);
	return tgt;
}

/*
 * Trims of a cache's own objects that found its slots taken are parked on
 * it, for its owner to take back when it runs dry, up to
 * TRIM_PARK_OBJS objects and half a MiB; past that the refill sends them
 * through the grace periods to the backend.  A burst of large objects (a
 * 4 KiB class keeps only 2 to 6, its slots hold 24) so comes back from its
 * own trims, not from the backend, while a CPU that only frees holds at
 * most that much per class.  Test builds may lower the bytes (0: every
 * such trim goes to the grace periods).
 */
#define TRIM_PARK_BYTES		(512 * 1024)
#if BPFMEM_TEST_SEAMS
_Atomic size_t memalloc_seam_trim_park_bytes = TRIM_PARK_BYTES;
#define trim_park_bytes		memalloc_seam_trim_park_bytes
#else
#define trim_park_bytes		((size_t)TRIM_PARK_BYTES)
#endif
#define TRIM_PARK_MAX(c)							\
	((int)min((size_t)TRIM_PARK_OBJS,					\
		  trim_park_bytes /						\
		  (size_t)atomic_load_explicit(&(c)->unit_size, memory_order_relaxed)))
/* Trims of another CPU's objects join one of its ready chains up to this
 * many: as many bytes as trims may park.  Below RCU_PENDING_MAX, up to
 * which the RCU stage joins chains anyway, so a tgt that never allocates
 * again holds no more than before.  Test builds that lower the park bytes
 * lower this too (0: no trim joins a chain). */
#define TRIM_MERGE_MAX(tgt)							\
	((int)(trim_park_bytes /						\
	       (size_t)atomic_load_explicit(&(tgt)->unit_size, memory_order_relaxed)))

/* Trims that found no free reuse slot, and re-entrant frees, go to their
 * origin cache's tasks-trace path (the kernel's free_bulk). */
static void free_bulk(struct bpf_mem_cache *c)
{
	struct llist_node *trimmed = llist_del_all(&c->trim_llist);
	struct llist_node *extra = llist_del_all(&c->free_llist_extra);

	if (extra) {
		llist_last(extra)->next = trimmed;
		trimmed = extra;
	}
	if (trimmed)
		enque_to_free_and_call(origin_hint(c), trimmed, llist_last(trimmed));
}

/*
 * An RCU grace period is over for `cnt` objects: they may be reused now.
 * Up to RCU_PENDING_MAX of them go back to the origin cache's owner as one
 * ready chain, count included, so the pool circulates without a walk: in a
 * free slot, or in front of a ready chain if the two stay within that
 * bound (the slots may all hold refill batches); else whole chains of up
 * to high_watermark objects fill its slots.  The rest joins its tasks-trace
 * path, where its refill still recycles them before they go back to the
 * backend.
 */
static void rcu_gp_done(struct bpf_mem_cache *c, struct llist_node *first,
			struct llist_node *last, int cnt)
{
	struct bpf_mem_cache *tgt = origin_hint(c);

	/* a chain of an owned CPU's objects, one of which it borrowed from
	 * the shared CPU, goes back to the owned CPU: the shared one only
	 * serves threads without a CPU and handlers, and would hold it */
	if (tgt == c->shared && c != c->shared)
		tgt = c;

	if (cnt <= RCU_PENDING_MAX(tgt) && !atomic_load(&c->draining) &&
	    (reuse_put(tgt, first, cnt) || reuse_merge(tgt, first, last, cnt, RCU_PENDING_MAX(tgt))))
		return;
	while (first && !atomic_load(&c->draining)) {
		int n = min(cnt, tgt->high_watermark);
		struct llist_node *cut = first, *rest;

		for (int i = 1; i < n; i++)
			cut = cut->next;
		rest = cut->next;
		cut->next = NULL;
		if (!reuse_put(tgt, first, n)) {
			cut->next = rest;
			break;
		}
		first = rest;
		cnt -= n;
	}
	if (first)
		enque_to_free_and_call(tgt, first, last);
}

/*
 * The RCU stage, one at a time: take the owner's chain out of rcu_out.
 * REUSE_BUSY while we read its tail and count, so that the owner, which
 * takes a chain back with a CAS from it, does not write them meanwhile.
 */
static struct llist_node *rcu_out_take(struct bpf_mem_cache *c, struct llist_node **tail,
				       int *cnt)
{
	struct llist_node *first = atomic_load_explicit(&c->rcu_out, memory_order_relaxed);

	/* acquire: the tail, the count and the links published with it */
	while (first && !atomic_compare_exchange_weak_explicit(&c->rcu_out, &first, REUSE_BUSY,
							       memory_order_acquire,
							       memory_order_relaxed))
		;
	if (!first)
		return NULL;	/* the owner took it back, to publish it again */
	*tail = c->rcu_out_tail;
	*cnt = c->rcu_out_cnt;
	/* release: the owner writes the next tail and count after our reads */
	atomic_store_explicit(&c->rcu_out, NULL, memory_order_release);
	return first;
}

static bool rcu_stage_ready(struct bpf_mem_cache *c)
{
	return atomic_load_explicit(&c->rcu_out, memory_order_relaxed) ||
	       !llist_empty(&c->free_by_rcu);
}

/* Called with call_rcu_in_progress set: start the RCU grace period of
 * everything on rcu_out and free_by_rcu.  False if there was nothing. */
static bool rcu_stage_queue(struct bpf_mem_cache *c);

static void __free_by_rcu(struct rcu_head *head)
{
	struct bpf_mem_cache *c = container_of(head, struct bpf_mem_cache, rcu);
	struct llist_node *llnode;

	rcu_callback_begin(head);
	llnode = llist_del_all(&c->waiting_for_gp);
	/* RCU grace period done: reusable, and on to the tasks-trace one */
	debug_poison_list(c, llnode);
	if (llnode) {
		atomic_fetch_sub_explicit(&c->rcu_pending, c->waiting_for_gp_cnt,
					  memory_order_relaxed);
		rcu_gp_done(c, llnode, c->waiting_for_gp_tail, c->waiting_for_gp_cnt);
	}
	/* frees that batched up behind this callback start their grace period
	 * now: the kernel waits for the next refill, a process may not have one */
	if (atomic_load(&c->draining) || !rcu_stage_queue(c)) {
		stage_end(&c->call_rcu_in_progress);
		/*
		 * Store-load against the *_free_rcu that publishes and then
		 * loads call_rcu_in_progress: with a full fence on both sides
		 * either it sees the stage ended and raises the work, or we
		 * see its objects here.
		 */
		atomic_thread_fence(memory_order_seq_cst);
		if (rcu_stage_ready(c) && !atomic_load(&c->draining))
			irq_work_queue(&c->refill_work);
	}
	rcu_callback_end();
	callback_done(c);
}

static bool rcu_stage_queue(struct bpf_mem_cache *c)
{
	struct llist_node *single = llist_del_all(&c->free_by_rcu), *first, *tail = NULL;
	int cnt = 0;

	first = rcu_out_take(c, &tail, &cnt);
	/* what others freed one by one is walked: it is little */
	if (single) {
		struct llist_node *last = single;

		for (cnt++; last->next; last = last->next)
			cnt++;
		last->next = first;
		if (!first)
			tail = last;
		first = single;
	}
	if (!first)
		return false;
	WARN_ON_ONCE(!llist_empty(&c->waiting_for_gp));
	c->waiting_for_gp_tail = tail;
	c->waiting_for_gp_cnt = cnt;
	atomic_store_explicit(&c->waiting_for_gp.first, first, memory_order_release);
	callback_queued(c);
	call_rcu_hurry(&c->rcu, __free_by_rcu);
	return true;
}

/* One RCU callback in flight per cache; later frees batch up behind it. */
static void check_free_by_rcu(struct bpf_mem_cache *c)
{
	if (!rcu_stage_ready(c))
		return;
	if (!stage_start(&c->call_rcu_in_progress))
		return;
	if (!rcu_stage_queue(c))
		stage_end(&c->call_rcu_in_progress);
}

/*
 * The owner is allocating and objects wait on the tasks-trace lists (a
 * stream of *_free_rcu, trims beyond the slots): they are ours already, so
 * fill every free slot with a chain of up to `high` of them rather than
 * one batch per wake-up.  The slots bound what is parked; the backend is
 * only ever asked for a batch.
 */
static void recycle_ttrace(struct bpf_mem_cache *c)
{
	while (reuse_has_free_slot(c)) {
		struct llist_node *head = NULL, *tail = NULL;
		int n = take_ttrace(c, c->high_watermark, &head, &tail);

		if (!n)
			return;
		if (!reuse_put(c, head, n)) {
			enque_to_free_and_call(c, head, tail);
			return;
		}
	}
}

static void bpf_mem_refill(struct irq_work *work)
{
	struct bpf_mem_cache *c = container_of(work, struct bpf_mem_cache, refill_work);
	int cached;

	if (unlikely(atomic_load(&c->draining)))
		return;		/* destroy frees every list itself */
	/*
	 * Keep a batch ready for the owner, which takes it the moment its
	 * list runs dry instead of waiting for us: the kernel's target after
	 * a refill is low + batch.  free_cnt is read racily: it need not be
	 * exact.
	 */
	cached = atomic_load_explicit(&c->free_cnt, memory_order_relaxed) + reuse_ready(c) +
		 atomic_load_explicit(&c->parked_cnt, memory_order_relaxed);
	if (cached < c->low_watermark + c->batch && reuse_has_free_slot(c)) {
		alloc_bulk(c, c->batch, false);
		recycle_ttrace(c);
	}
	/* trims past the parked ones, and re-entrant frees */
	if (!llist_empty(&c->trim_llist) || !llist_empty(&c->free_llist_extra))
		free_bulk(c);
	check_free_by_rcu(c);
}

/* ---- the owner's side ---- */

/*
 * The owner's steps that hold objects only in its own variables, and fork.
 * An inline refill holds what the lock-free backend handed it (for a
 * moment, a class's whole partial list); taking a ready chain or parked
 * objects, a trim, and handing on a *_free_rcu batch hold a chain between
 * the list they leave and the one they join, up to RCU_PENDING_MAX objects.
 * A fork child would lose them with the thread.  Fork preparation
 * therefore closes the gate and waits until those steps of other threads
 * are out; a step that finds the gate closed gives up (a refill or a take
 * leaves its owner to wait for the refill thread or the shared CPU, a trim
 * or a hand-on is tried again on the next slow path).
 * The forking thread's own steps (fork called from a handler that
 * interrupted one) can only end after the fork: they are not waited for,
 * and still run in the child, where they decrement the count they raised.
 * Each side writes its own word, then reads the other's (seq_cst): at
 * least one of them sees the other.
 */
static _Atomic bool inline_gate_closed;	/* fork preparation closes, the parent and the child open */
static _Atomic long inline_in_flight;	/* gated steps between enter and exit, every thread */
static __tls_ie int inline_mine;	/* of those, this thread's: handlers nest, each undoes its own */

#if BPFMEM_TEST_SEAMS
void (*_Atomic memalloc_seam_inline_refill)(void);
void (*_Atomic memalloc_seam_fork_waits)(void);
void (*_Atomic memalloc_seam_take)(void);
#define memalloc_seam(hook)							\
	do {									\
		void (*fn)(void) = atomic_load_explicit(&(hook), memory_order_acquire); \
									\
		if (fn)							\
			fn();						\
	} while (0)
#else
#define memalloc_seam(hook) do { } while (0)
#endif

static void inline_exit(void)
{
	atomic_fetch_sub_explicit(&inline_in_flight, 1, memory_order_release);
	inline_mine--;
}

static bool inline_enter(void)
{
	inline_mine++;
	atomic_fetch_add(&inline_in_flight, 1);
	if (likely(!atomic_load(&inline_gate_closed)))
		return true;
	inline_exit();
	return false;
}

static void inline_gate_close(void)
{
	atomic_store(&inline_gate_closed, true);
	if (atomic_load(&inline_in_flight) > inline_mine)
		memalloc_seam(memalloc_seam_fork_waits);
	/* a refill is one backend call, mmap at worst; a take walks a piece */
	while (atomic_load_explicit(&inline_in_flight, memory_order_acquire) > inline_mine)
		sched_yield();
}

static void inline_gate_open(void)
{
	atomic_store_explicit(&inline_gate_closed, false, memory_order_release);
}

/*
 * Owner, inside the critical section: the first `n` objects of `chain`
 * (which holds `cnt`) onto the empty free_llist, the rest parked, as a
 * refill lands `batch` objects rather than all the cache will need: a list
 * far above the high watermark would trim on the next free, and walk what
 * it cuts when the slots are taken.  The walk is over the `n` objects the
 * owner allocates next.  Parked must be empty.  Each step is in memory
 * before the next (fork): a child copying us halfway may lose the objects
 * we hold, never see them twice.
 */
static void take_piece(struct bpf_mem_cache *c, struct llist_node *chain, int cnt, int n)
{
	struct llist_node *last = chain;

	for (int i = 1; i < n; i++)
		last = last->next;
	c->parked = last->next;
	barrier();
	atomic_store_explicit(&c->parked_cnt, cnt - n, memory_order_relaxed);
	memalloc_seam(memalloc_seam_take);
	last->next = NULL;
	barrier();
	c->free_llist.first = chain;
	atomic_store_explicit(&c->free_cnt, n, memory_order_relaxed);
}

/*
 * Inside the critical section, with an empty free_llist: the objects
 * parked here (this cache's trims, the rest of a long chain), else a
 * ready chain (O(1), its count comes with it), else what re-entrant frees
 * left on free_llist_extra.  Either way the list was empty, so LIFO order
 * holds.  As many as trims may park come whole, no walk: a large class's
 * parked trims are up to 128 objects on as many cold pages, and walking
 * them showed in the tail latency; beyond that (a grace period's objects),
 * a piece of (low + high) / 2, what a trim keeps.
 */
static void take_ready(struct bpf_mem_cache *c)
{
	struct llist_node *chain = c->parked;
	int cnt = atomic_load_explicit(&c->parked_cnt, memory_order_relaxed);

	if (!inline_enter())
		return;
	if (!chain) {
		chain = reuse_take(c, &cnt);
		if (!chain) {
			chain = llist_del_all(&c->free_llist_extra);
			cnt = (int)llist_count(chain);
		}
	}
	if (chain && cnt > max(c->high_watermark, TRIM_PARK_MAX(c))) {
		/* parked is empty, or this is all of it: it may park again */
		take_piece(c, chain, cnt, (c->low_watermark + c->high_watermark) / 2);
	} else if (chain) {
		/* emptied first: a fork child copying us halfway (a handler's
		 * fork) may lose them, never see them twice */
		if (chain == c->parked) {
			c->parked = NULL;
			atomic_store_explicit(&c->parked_cnt, 0, memory_order_relaxed);
			barrier();
		}
		c->free_llist.first = chain;
		atomic_store_explicit(&c->free_cnt, cnt, memory_order_relaxed);
	}
	inline_exit();
}

/*
 * Above the high watermark: keep the (low+high)/2 most recently freed
 * objects, which are the cache-hot ones, and hand the rest to the origin
 * cache as one ready chain.  If its slots are all taken: another owned
 * CPU's objects go in front of one of its ready chains, up to TRIM_MERGE_MAX (a
 * consumer's trims are what its producer allocates next: through the grace
 * periods they would reach the same chains later, while it takes new
 * objects from the backend, as the kernel's free_bulk hands them to tgt's
 * refill at once); our own are parked here for the owner.  Past those
 * bounds they go to the refill thread and through the grace periods, and
 * true then.
 */
static bool trim(struct bpf_mem_cache *c)
{
	int cnt = atomic_load_explicit(&c->free_cnt, memory_order_relaxed);
	int keep = (c->low_watermark + c->high_watermark) / 2;
	int parked = atomic_load_explicit(&c->parked_cnt, memory_order_relaxed);
	struct llist_node *last = c->free_llist.first, *cut, *cut_last;
	struct bpf_mem_cache *tgt = origin_hint(c);
	bool raise = false;

	if (!inline_enter())
		return false;	/* a fork is being prepared: the next free trims */
	for (int i = 1; i < keep; i++)
		last = last->next;
	cut = last->next;
	last->next = NULL;
	atomic_store_explicit(&c->free_cnt, keep, memory_order_relaxed);
	atomic_store_explicit(&c->trims,
			      atomic_load_explicit(&c->trims, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	if (!reuse_put(tgt, cut, cnt - keep)) {
		cut_last = llist_last(cut);	/* the cold end: cnt - keep objects */
		/* not the shared CPU's chains, for objects its owner borrowed
		 * there (rcu_gp_done): it only serves threads without a CPU and
		 * handlers, and would hold them */
		if (tgt != c && tgt != c->shared &&
		    reuse_merge(tgt, cut, cut_last, cnt - keep, TRIM_MERGE_MAX(tgt))) {
			/* the origin's owner has them */
		} else if (parked + cnt - keep > TRIM_PARK_MAX(c)) {
			llist_add_batch(cut, cut_last, &c->trim_llist);
			raise = true;
		} else {
			cut_last->next = c->parked;
			barrier();	/* linked before it is parked (fork) */
			c->parked = cut;
			atomic_store_explicit(&c->parked_cnt, parked + cnt - keep,
					      memory_order_relaxed);
		}
	}
	inline_exit();
	return raise;
}


/*
 * The owner, inside the critical section, found its list empty and no
 * chain ready: it runs the refill itself, as the kernel's irq_work runs on
 * the same CPU as soon as interrupts are back on, instead of returning
 * NULL until the refill thread gets a CPU.  It asks the backend only: that
 * is lock-free and async-signal-safe (chunks from mmap), where the
 * tasks-trace lists are under the refill thread's lock.  Per-CPU objects
 * come from malloc: they still wait for the refill thread.
 */
static void refill_inline(struct bpf_mem_cache *c)
{
	struct llist_node *first, *last;
	int n;

	/*
	 * Nor while more *_free_rcu objects of this cache than its slots hold
	 * are on their way back through a grace period.  A stream of them
	 * faster than grace periods end would otherwise grow the heap by what
	 * waits, and a stalled grace period (a fork pauses the callbacks)
	 * without bound.  The owner waits for them then: NULL, as in the
	 * kernel.  (Its trims need no such rule: they wait parked for it.)
	 */
	if (c->percpu_size ||
	    rcu_owned_in_flight(c) > RCU_PENDING_MAX(c))
		return;
	if (!inline_enter())
		return;
	n = __alloc_bulk(c, c->batch, &first, &last);
	memalloc_seam(memalloc_seam_inline_refill);
	if (n) {
		/* on the list before the exit: a fork right after it must find
		 * the batch where the child's destroy looks */
		c->free_llist.first = first;	/* it was empty: last->next is NULL */
		free_cnt_add(c, n);
		atomic_store_explicit(&c->inline_refills,
				      atomic_load_explicit(&c->inline_refills,
							   memory_order_relaxed) + 1,
				      memory_order_relaxed);
	}
	inline_exit();
}

static void init_refill_work(struct bpf_mem_cache *c, int unit_size);

static bool cache_is_set_up(const struct bpf_mem_cache *c)
{
	return atomic_load_explicit(&c->unit_size, memory_order_acquire) != 0;
}

/*
 * A virtual CPU's copy is set up from the shared CPU's one (`tmpl`, set up
 * at init) when it is first used, so that an allocator costs memory only on
 * the CPUs that used it.  A zeroed copy sends both fast paths here: a count
 * of 0 is neither above alloc_floor 0 nor below free_ceil 0.  Called by the
 * owner inside the critical section (a handler finds it taken and never
 * sees half a set-up); no allocation, so safe in a signal handler.
 */
static void cache_setup(struct bpf_mem_cache *c, const struct bpf_mem_cache *tmpl)
{
	c->percpu_size = tmpl->percpu_size;
	c->class_off = tmpl->class_off;
	c->objcg = tmpl->objcg;
	c->shared = (struct bpf_mem_cache *)tmpl;
	c->pcpu_base = tmpl->pcpu_base;
	c->cpu = (int)(((char *)c - (char *)tmpl->pcpu_base) / PCPU_STRIDE);
	atomic_store_explicit(&c->tgt, c, memory_order_relaxed);
	init_refill_work(c, atomic_load(&tmpl->unit_size));
	/* publish, last: from here on a handler on this thread may raise the
	 * work, the refill thread run it, other CPUs steer frees here */
	atomic_store_explicit(&c->unit_size, atomic_load(&tmpl->unit_size), memory_order_release);
	/* frees from handlers that interrupted the set-up found no work to raise */
	if (!llist_empty(&c->free_by_rcu) || !llist_empty(&c->free_llist_extra))
		irq_work_queue(&c->refill_work);
}

/*
 * Owner, inside the critical section: hand the pending *_free_rcu objects
 * to the RCU stage through rcu_out.  If the stage has not taken the last
 * chain yet, take it back (a CAS from it: the stage takes it with a CAS
 * too) and publish both as one, so that nothing waits here longer than
 * a batch.  Only while the stage is reading a chain (REUSE_BUSY) do they
 * stay private, for the next *_free_rcu or slow path; `force` (a barrier's
 * flush) then pushes them onto free_by_rcu, where the stage walks them.
 * True: raise the work, no stage is in flight to pick them up.  The fence
 * pairs with the one in __free_by_rcu (store-load): either we see its
 * stage ended, or it sees our objects.
 */
static bool rcu_local_publish(struct bpf_mem_cache *c, bool force)
{
	struct llist_node *first = c->rcu_local_first, *last = c->rcu_local_last;
	struct llist_node *out = atomic_load_explicit(&c->rcu_out, memory_order_acquire);
	int cnt = c->rcu_local_cnt;
	bool raise;

	if (!inline_enter())
		return false;	/* a fork is being prepared: the next call hands on */
	/* acquire either way: on failure `out` may be the NULL the stage
	 * stored (release) after reading the tail and count we write next */
	if (out && out != REUSE_BUSY &&
	    atomic_compare_exchange_strong_explicit(&c->rcu_out, &out, NULL,
						    memory_order_acquire, memory_order_acquire)) {
		/* ours again, tail and count as we wrote them; its objects are
		 * counted in rcu_pending already */
		last->next = out;
		last = c->rcu_out_tail;
		cnt += c->rcu_out_cnt;
		out = NULL;
	}
	if (out && !force) {
		inline_exit();
		return false;
	}
	atomic_fetch_add_explicit(&c->rcu_pending, c->rcu_local_cnt, memory_order_relaxed);
	/* emptied before the (release) publication: a fork child copying us
	 * halfway may lose the batch, never see it twice */
	c->rcu_local_first = NULL;
	c->rcu_local_cnt = 0;
	barrier();
	if (!out) {
		c->rcu_out_tail = last;
		c->rcu_out_cnt = cnt;
		atomic_store_explicit(&c->rcu_out, first, memory_order_release);
	} else {
		llist_add_batch(first, last, &c->free_by_rcu);
	}
	atomic_thread_fence(memory_order_seq_cst);
	raise = !atomic_load_explicit(&c->call_rcu_in_progress, memory_order_relaxed);
	inline_exit();
	return raise;
}

/*
 * The owner's *_free_rcu: the kernel keeps free_by_rcu private to its CPU
 * (a plain push); here the RCU stage takes it from another thread, so the
 * owner collects a batch privately and publishes it on rcu_out (at most
 * one CAS per batch), at once when no RCU stage is in flight (nothing
 * would batch behind it).
 * False: not entered (re-entry, a copy not set up): the caller pushes.
 */
static bool rcu_local_add(struct bpf_mem_cache *c, struct llist_node *llnode)
{
	bool done = false, raise = false;

	if (local_inc_return(&c->active) == 1 && cache_is_set_up(c)) {
		llnode->next = c->rcu_local_first;
		if (!c->rcu_local_first)
			c->rcu_local_last = llnode;
		c->rcu_local_first = llnode;
		if (++c->rcu_local_cnt >= c->batch ||
		    !atomic_load_explicit(&c->call_rcu_in_progress, memory_order_relaxed))
			raise = rcu_local_publish(c, false);
		done = true;
	}
	local_dec(&c->active);
	if (raise)
		irq_work_queue(&c->refill_work);
	return done;
}

/* Inside the critical section of a set-up cache: the debug checks of a
 * free, and the origin hint (the kernel's tgt).  False: drop the object. */
static __always_inline bool free_note(struct bpf_mem_cache *c, struct llist_node *llnode,
				      bool poison)
{
	if (!debug_obj_freed(c, llnode, poison))
		return false;
	/* remember the cache that allocated it (the hint need not be exact) */
	atomic_store_explicit(&c->tgt, *(struct bpf_mem_cache **)llnode, memory_order_relaxed);
	return true;
}

/*
 * The whole unit_alloc of the kernel, for every case: a copy not set up
 * yet, the shared CPU (c == tmpl), an empty or low list, re-entry.
 * unit_alloc_fast() below has the common case.
 */
static void *unit_alloc_slow(struct bpf_mem_cache *c, struct bpf_mem_cache *tmpl,
			     bool may_refill)
{
	bool shared = c == tmpl, refill = false, low = false;
	struct cache_guard g = cache_enter(c, shared);
	struct llist_node *llnode = NULL;

	if (likely(g.entered) && likely(cache_is_set_up(tmpl))) {
		int cnt, cached;

		if (unlikely(!cache_is_set_up(c)))
			cache_setup(c, tmpl);
		if (c->rcu_local_first)
			refill = rcu_local_publish(c, false);
		if (!c->free_llist.first)
			take_ready(c);
		if (!c->free_llist.first && may_refill)
			refill_inline(c);
		llnode = __llist_del_first(&c->free_llist);
		if (likely(llnode)) {
			debug_obj_allocated(c, llnode);
			*(struct bpf_mem_cache **)llnode = c;
		}
		cnt = free_cnt_add(c, llnode ? -1 : 0);
		/* the kernel's rule, with the ready chains and the parked
		 * objects counted as cached */
		cached = cnt + reuse_ready(c) +
			 atomic_load_explicit(&c->parked_cnt, memory_order_relaxed);
		low = cached < c->low_watermark;
		/* back here at the low watermark; or only once the list is
		 * empty, when a chain is ready or the refill was raised */
		c->alloc_floor = refill || low || cached > cnt ? 0 : c->low_watermark;
	}
	cache_exit(c, shared, g);

	/*
	 * A refill that only keeps a batch ready is lazy: if the list runs
	 * dry first, the owner refills itself, so it must not pay for waking
	 * the thread (a system call and a wake-up, microseconds) on its way
	 * out of here.  One it waits for is not: per-CPU objects, which it
	 * cannot refill itself, or a list it left empty.
	 */
	if (refill || (low && (!llnode || c->percpu_size)))
		irq_work_queue(&c->refill_work);
	else if (low)
		irq_work_queue_lazy(&c->refill_work);
	/* still empty (per-CPU objects before their refill lands, objects on
	 * their way back, a backend out of memory, a fork under way): borrow
	 * from the shared CPU; it refills itself only for a handler that
	 * found this cache taken, never in place of a refill held back here */
	if (unlikely(!llnode) && !shared)
		return unit_alloc_slow(tmpl, tmpl, !g.entered);
	return llnode;
}

static void unit_free_slow(struct bpf_mem_cache *c, struct bpf_mem_cache *tmpl,
			   struct llist_node *llnode)
{
	bool shared = c == tmpl, raise = false;
	struct cache_guard g = cache_enter(c, shared);

	if (likely(g.entered)) {
		if (unlikely(!cache_is_set_up(c)))
			cache_setup(c, tmpl);
		if (c->rcu_local_first)
			raise = rcu_local_publish(c, false);
		if (free_note(c, llnode, true)) {
			__llist_add(llnode, &c->free_llist);
			if (free_cnt_add(c, 1) > c->high_watermark)
				raise |= trim(c);
		}
	} else if (!cache_is_set_up(c) || free_note(c, llnode, true)) {
		/* A free cannot fail: park it on the atomic list; the owner
		 * takes it once its list runs dry, or the refill does.  Atomic
		 * because a handler may interrupt this.  A copy being set up
		 * right now raises the work itself when it is done. */
		llist_add(llnode, &c->free_llist_extra);
		raise = cache_is_set_up(c);
	}
	cache_exit(c, shared, g);

	if (unlikely(raise))
		irq_work_queue(&c->refill_work);
}

/* ---- from an allocator to the caller's cache ---- */

/* The shared CPU's copy, which is also every other copy's template. */
static __always_inline struct bpf_mem_cache *cache_tmpl(void *pcpu, size_t off)
{
	return cache_on(pcpu, off, SHARED_CPU);
}

/* An initialised allocator's per-CPU area of caches, and its size per CPU. */
static void *ma_area_of(const struct bpf_mem_alloc *ma)
{
	return ma->cache ? (void *)ma->cache : (void *)ma->caches;
}

static size_t ma_area_size(const struct bpf_mem_alloc *ma)
{
	return ma->cache ? sizeof(struct bpf_mem_cache) : sizeof(struct bpf_mem_caches);
}

static __always_inline struct llist_node *obj_node(void *ptr)
{
	return (struct llist_node *)((char *)ptr - LLIST_NODE_SZ);
}

/* Everything but the fast path: first use on this thread, no virtual CPU
 * free, a list at its floor. */
static __noinline void *cache_alloc_slow(void *pcpu, size_t off)
{
	struct bpf_mem_cache *tmpl = cache_tmpl(pcpu, off);
	struct llist_node *llnode;

	llnode = unit_alloc_slow(cache_on(pcpu, off, smp_processor_id()), tmpl, true);
	return llnode ? (char *)llnode + LLIST_NODE_SZ : NULL;
}

static __noinline void cache_free_slow(void *pcpu, size_t off, void *ptr)
{
	unit_free_slow(cache_on(pcpu, off, smp_processor_id()), cache_tmpl(pcpu, off),
		       obj_node(ptr));
}

/*
 * The fast paths are <bpfmem.h>'s, the very code BPFMEM_INLINE puts in
 * callers: an owned CPU whose list is between its floor and its ceiling.
 * A thread without a CPU of its own reaches a guard copy (kernel/cpu.h),
 * whose zeroed watermarks send it to the slow path.
 * Debug builds take the slow path every time, which checks every object.
 */
static __always_inline void *cache_alloc(void *pcpu, size_t off)
{
	if (!BPFMEM_DEBUG) {
		void *obj = _bpfmem_fast_alloc(_bpfmem_fast_cache(pcpu, off, bpfmem_this_cpu_off));

		if (likely(obj))
			return obj;
	}
	return cache_alloc_slow(pcpu, off);
}

static __always_inline void cache_free(void *pcpu, size_t off, void *ptr)
{
	if (!BPFMEM_DEBUG &&
	    likely(_bpfmem_fast_free(_bpfmem_fast_cache(pcpu, off, bpfmem_this_cpu_off), ptr)))
		return;
	cache_free_slow(pcpu, off, ptr);
}

static void cache_free_rcu(void *pcpu, size_t off, void *ptr)
{
	struct bpf_mem_cache *tmpl = cache_tmpl(pcpu, off);
	struct bpf_mem_cache *c = cache_on(pcpu, off, smp_processor_id());
	struct llist_node *llnode = obj_node(ptr);

	if (unlikely(!cache_is_set_up(c))) {
		struct cache_guard g = cache_enter(c, c == tmpl);

		if (g.entered && !cache_is_set_up(c))
			cache_setup(c, tmpl);
		cache_exit(c, c == tmpl, g);
	}
	/* readers may still look at it: poisoned after the grace period */
	if (cache_is_set_up(c) && !free_note(c, llnode, false))
		return;
	if (c != tmpl && rcu_local_add(c, llnode))
		return;
	/* re-entry, the shared CPU, a copy being set up: the atomic list,
	 * which every context may push to (the kernel's free_llist_extra_rcu) */
	atomic_fetch_add_explicit(&c->rcu_pending, 1, memory_order_relaxed);
	llist_add(llnode, &c->free_by_rcu);
	/* pairs with the fence in __free_by_rcu (store-load); a copy still
	 * being set up (we interrupted it) raises the work when done */
	atomic_thread_fence(memory_order_seq_cst);
	if (cache_is_set_up(c) &&
	    !atomic_load_explicit(&c->call_rcu_in_progress, memory_order_relaxed))
		irq_work_queue(&c->refill_work);
}

static __always_inline struct bpf_mem_cache *owner_cache(void *ptr)
{
	return *(struct bpf_mem_cache **)((char *)ptr - LLIST_NODE_SZ);
}

/*
 * The entry points check only what costs nothing on their fast path: a NULL
 * `ma`, and the per-CPU area pointer they load anyway, which is NULL in a
 * zeroed allocator (never initialised, or destroyed) and in one of the
 * other kind.  Garbage is undefined behaviour, as in the kernel; debug
 * builds check the magic as well and report it.
 */
static __always_inline void *ma_area(const struct bpf_mem_alloc *ma, bool fixed)
{
	void *pcpu;

	if (unlikely(!ma))
		return NULL;
	pcpu = fixed ? (void *)ma->cache : (void *)ma->caches;
	if (BPFMEM_DEBUG && pcpu &&
	    !debug_ma_ok(ma, fixed ? BPFMEM_MAGIC_FIXED : BPFMEM_MAGIC_ANY))
		return NULL;
	return pcpu;
}

#define fixed_area(ma)	ma_area((ma), true)
#define any_area(ma)	ma_area((ma), false)

/* Per-CPU units carry no header: their class is that of `size` itself. */
static __noinline void *percpu_alloc(void *pcpu, size_t size)
{
	int idx = bpf_mem_cache_idx(size);

	return idx < 0 ? NULL : cache_alloc(pcpu, CACHE_OFF(idx));
}

__public __fastpath void *bpf_mem_alloc(struct bpf_mem_alloc *ma, size_t size)
{
	void *pcpu = any_area(ma);

	if (unlikely(!pcpu))
		return NULL;
	if (unlikely(ma->percpu))
		return percpu_alloc(pcpu, size);
	/* 0 wraps around and fails too */
	if (unlikely(size - 1 >= BPF_MEM_ALLOC_SIZE_MAX - LLIST_NODE_SZ))
		return NULL;
	return cache_alloc(pcpu, class_off_of[(size + LLIST_NODE_SZ + 7) / 8]);
}

__public __fastpath void bpf_mem_free(struct bpf_mem_alloc *ma, void *ptr)
{
	void *pcpu = any_area(ma);

	if (unlikely(!ptr || !pcpu))
		return;
	if (!debug_header_ok(pcpu, ptr))
		return;
	cache_free(pcpu, _bpfmem_class_off(pcpu, ptr), ptr);
}

__public void bpf_mem_free_rcu(struct bpf_mem_alloc *ma, void *ptr)
{
	void *pcpu = any_area(ma);

	if (unlikely(!ptr || !pcpu))
		return;
	if (!debug_header_ok(pcpu, ptr))
		return;
	cache_free_rcu(pcpu, _bpfmem_class_off(pcpu, ptr), ptr);
}

__public __fastpath void *bpf_mem_cache_alloc(struct bpf_mem_alloc *ma)
{
	void *pcpu = fixed_area(ma);

	if (unlikely(!pcpu))
		return NULL;
	return cache_alloc(pcpu, 0);
}

__public __fastpath void bpf_mem_cache_free(struct bpf_mem_alloc *ma, void *ptr)
{
	void *pcpu = fixed_area(ma);

	if (unlikely(!ptr || !pcpu))
		return;
	cache_free(pcpu, 0, ptr);
}

__public void bpf_mem_cache_free_rcu(struct bpf_mem_alloc *ma, void *ptr)
{
	void *pcpu = fixed_area(ma);

	if (unlikely(!ptr || !pcpu))
		return;
	cache_free_rcu(pcpu, 0, ptr);
}

__public void bpf_mem_cache_raw_free(void *ptr)
{
	if (!ptr)
		return;
	free_one(owner_cache(ptr), obj_node(ptr));
}

__public void *bpf_mem_cache_alloc_flags(struct bpf_mem_alloc *ma, unsigned int gfp)
{
	struct bpf_mem_cache *c;
	void *ret;

	if (unlikely(gfp & ~BPFMEM_GFP_KERNEL))
		return NULL;
	ret = bpf_mem_cache_alloc(ma);
	if (ret || gfp != BPFMEM_GFP_KERNEL || !fixed_area(ma))
		return ret;
	/* may block: straight to the backend, as the kernel does for
	 * GFP_KERNEL; the object belongs to the shared CPU's copy, which is
	 * always set up */
	c = cache_tmpl(ma->cache, 0);
	ret = __alloc(c);
	if (!ret)
		return NULL;
	*(struct bpf_mem_cache **)ret = c;
	return (char *)ret + LLIST_NODE_SZ;
}

__public int bpf_mem_alloc_check_size(bool percpu, size_t size)
{
	/* per-CPU units carry no header */
	if ((percpu && size > BPF_MEM_ALLOC_SIZE_MAX) ||
	    (!percpu && size > BPF_MEM_ALLOC_SIZE_MAX - LLIST_NODE_SZ))
		return -E2BIG;
	return 0;
}

/* ---- init and destroy ---- */

static void init_refill_work(struct bpf_mem_cache *c, int unit_size)
{
	init_irq_work(&c->refill_work, bpf_mem_refill);
	if (c->percpu_size) {
		c->low_watermark = 1;
		c->high_watermark = 3;
	} else if (unit_size <= 256) {
		c->low_watermark = 32;
		c->high_watermark = 96;
	} else {
		/* 4096-byte units: low 2, high 6, batch 3; 8192 and up: 1, 3, 1 */
		c->low_watermark = max(32 * 256 / unit_size, 1);
		c->high_watermark = max(96 * 256 / unit_size, 3);
	}
	c->batch = max((c->high_watermark - c->low_watermark) / 4 * 3, 1);
	c->alloc_floor = c->low_watermark;
	c->free_ceil = c->high_watermark;
}

/* Assume a first run does no more than 4 small allocations per CPU.  The
 * caller holds the cache (init, or its owner inside `active`). */
static void prefill_mem_cache(struct bpf_mem_cache *c)
{
	alloc_bulk(c, !c->percpu_size && c->unit_size <= 256 ? 4 : 1, true);
}

/* The shared CPU's copy of a class, the template of the other CPUs'
 * copies: set up, and published last. */
static void init_cache(struct bpf_mem_cache *c, void *pcpu, size_t off, int unit_size,
		       int percpu_size, struct bpfmem_objcg *objcg)
{
	c->class_off = off;
	c->percpu_size = percpu_size;
	c->objcg = objcg;
	c->cpu = SHARED_CPU;
	c->shared = c;
	c->pcpu_base = pcpu;
	atomic_store_explicit(&c->tgt, c, memory_order_relaxed);
	/* the template holds the class's slab; set-up copies reach it through
	 * c->shared */
	c->slab = percpu_size ? NULL : kmem_cache_create(unit_size, off / sizeof(struct bpf_mem_cache));
	init_refill_work(c, unit_size);
	atomic_store_explicit(&c->unit_size, unit_size, memory_order_release);
}

/*
 * CPU hotplug, as far as a process has it: the caller has just become the
 * owner of `cpu` (process context).  Set up and prefill its copies that are
 * not set up yet, inside `active`: its own handlers may use them already.
 * At init (`ma` not published yet) this also serves the CPUs in use then.
 */
static void setup_on_cpu(struct bpf_mem_cache *c, struct bpf_mem_cache *tmpl, void *arg)
{
	(void)arg;
	if (local_inc_return(&c->active) == 1 && !cache_is_set_up(c)) {
		cache_setup(c, tmpl);
		prefill_mem_cache(c);
	}
	local_dec(&c->active);
}

static void ma_register(struct bpf_mem_alloc *ma)
{
	pthread_mutex_lock(&ma_lock);
	ma->next_ma = ma_list;
	if (ma_list)
		ma_list->pprev_ma = &ma->next_ma;
	ma->pprev_ma = &ma_list;
	ma_list = ma;
	pthread_mutex_unlock(&ma_lock);
}

static void ma_unregister(struct bpf_mem_alloc *ma)
{
	pthread_mutex_lock(&ma_lock);
	*ma->pprev_ma = ma->next_ma;
	if (ma->next_ma)
		ma->next_ma->pprev_ma = ma->pprev_ma;
	pthread_mutex_unlock(&ma_lock);
}

static int ma_prepare(struct bpf_mem_alloc *ma)
{
	int err;

	if (!ma)
		return -EINVAL;
	if (ma->magic == BPFMEM_MAGIC_ANY || ma->magic == BPFMEM_MAGIC_FIXED)
		return -EBUSY;	/* initialised twice: would leak and unlink the first */
	memset(ma, 0, sizeof(*ma));
	err = bpfmem_runtime_init();
	if (!err)
		err = irq_work_start();
	return err;
}

/* `tmpl`: the class's shared copy, the template of the others */
typedef void (*cache_fn)(struct bpf_mem_cache *c, struct bpf_mem_cache *tmpl, void *arg);

static void for_each_cache_on(struct bpf_mem_alloc *ma, int cpu, cache_fn fn, void *arg);

/* Set up and prefill the copies of the CPUs owned now, and the caller's:
 * `ma` is not published yet, so nothing else touches them. */
static void setup_cpus_in_use(struct bpf_mem_alloc *ma)
{
	int self = bpfmem_current_cpu();

	for (int cpu = 0; cpu < nr_cpu_ids; cpu++)
		if (cpu == self || cpu_in_use(cpu))
			for_each_cache_on(ma, cpu, setup_on_cpu, NULL);
}

__public int bpf_mem_alloc_init(struct bpf_mem_alloc *ma, int size, bool percpu)
{
	int i, unit_size, percpu_size = 0;
	struct bpfmem_objcg *objcg;
	void *pcpu;
	int err;

	if (size < 0 || (percpu && size == 0) || (percpu && size > BPF_MEM_ALLOC_SIZE_MAX) ||
	    (!percpu && size > (1 << 30)))
		return -EINVAL;
	err = ma_prepare(ma);
	if (err)
		return err;
	/* room for the llist node and the per-CPU pointer */
	if (percpu)
		percpu_size = LLIST_NODE_SZ + sizeof(void *);
	ma->percpu = percpu;

	pcpu = pcpu_area_alloc(size ? sizeof(struct bpf_mem_cache) : sizeof(struct bpf_mem_caches));
	if (!pcpu)
		return -ENOMEM;
	objcg = get_obj_cgroup_from_current();
	ma->objcg = objcg;

	if (size) {
		unit_size = percpu ? size : size + (int)LLIST_NODE_SZ;
		init_cache(cache_tmpl(pcpu, 0), pcpu, 0, unit_size, percpu_size, objcg);
		prefill_mem_cache(cache_tmpl(pcpu, 0));
		ma->cache = pcpu;
		ma->magic = BPFMEM_MAGIC_FIXED;
	} else {
		for (i = 0; i < NUM_CACHES; i++) {
			init_cache(cache_tmpl(pcpu, CACHE_OFF(i)), pcpu, CACHE_OFF(i),
				   bpf_mem_sizes[i], percpu_size, objcg);
			prefill_mem_cache(cache_tmpl(pcpu, CACHE_OFF(i)));
		}
		ma->caches = pcpu;
		ma->magic = BPFMEM_MAGIC_ANY;
	}
	setup_cpus_in_use(ma);
	ma_register(ma);
	return 0;
}

__public int bpf_mem_alloc_percpu_init(struct bpf_mem_alloc *ma, struct bpfmem_objcg *objcg)
{
	void *pcpu;
	int err = ma_prepare(ma);

	if (err)
		return err;
	/* every class zero (not set up) until bpf_mem_alloc_percpu_unit_init */
	pcpu = pcpu_area_alloc(sizeof(struct bpf_mem_caches));
	if (!pcpu)
		return -ENOMEM;
	ma->caches = pcpu;
	ma->objcg = obj_cgroup_get(objcg);
	ma->percpu = true;
	ma->magic = BPFMEM_MAGIC_ANY;
	ma_register(ma);
	return 0;
}

/*
 * Writes only the class's shared copy (not set up until published, so a
 * thread that uses the shared CPU meanwhile finds nothing there) and the
 * caller's own copy: every other CPU's copy is set up by its owner on first
 * use, so other threads may allocate from other classes meanwhile.
 */
__public int bpf_mem_alloc_percpu_unit_init(struct bpf_mem_alloc *ma, int size)
{
	int i, self = bpfmem_current_cpu();
	struct bpf_mem_cache *tmpl;

	if (!ma || ma->magic != BPFMEM_MAGIC_ANY || !ma->percpu)
		return -EINVAL;
	i = bpf_mem_cache_idx(size < 0 ? 0 : (size_t)size);
	if (i < 0)
		return -EINVAL;
	tmpl = cache_tmpl(ma->caches, CACHE_OFF(i));
	/* serialised with attach-time set-up, which reads the template */
	pthread_mutex_lock(&ma_lock);
	if (!cache_is_set_up(tmpl)) {
		init_cache(tmpl, ma->caches, CACHE_OFF(i), bpf_mem_sizes[i],
			   LLIST_NODE_SZ + sizeof(void *), ma->objcg);
		/* threads on the shared CPU may use it from now on: its refill
		 * prefills it */
		irq_work_queue(&tmpl->refill_work);
		if (self >= 0)
			setup_on_cpu(cache_on(ma->caches, CACHE_OFF(i), self), tmpl, NULL);
	}
	pthread_mutex_unlock(&ma_lock);
	return 0;
}

/* Called with nothing using the allocator (and its work synced). */
static void drain_mem_cache(struct bpf_mem_cache *c)
{
	struct llist_node *ttrace, *waiting_ttrace;

	pthread_mutex_lock(&ttrace_lock);
	ttrace = __llist_del_all(&c->free_by_rcu_ttrace);
	waiting_ttrace = __llist_del_all(&c->waiting_for_gp_ttrace);
	pthread_mutex_unlock(&ttrace_lock);
	free_all(c, ttrace);
	free_all(c, waiting_ttrace);
	free_all(c, __llist_del_all(&c->free_llist));
	atomic_store_explicit(&c->free_cnt, 0, memory_order_relaxed);
	for (int i = 0; i < REUSE_SLOTS; i++) {
		struct llist_node *chain = atomic_exchange(&c->reuse_chain[i], NULL);

		if (chain != REUSE_BUSY)
			free_all(c, chain);
	}
	free_all(c, llist_del_all(&c->trim_llist));
	free_all(c, c->parked);
	c->parked = NULL;
	atomic_store_explicit(&c->parked_cnt, 0, memory_order_relaxed);
	free_all(c, llist_del_all(&c->free_llist_extra));
	free_all(c, llist_del_all(&c->free_by_rcu));
	free_all(c, atomic_exchange(&c->rcu_out, NULL));
	free_all(c, c->rcu_local_first);
	c->rcu_local_first = NULL;
	c->rcu_local_cnt = 0;
	/* a callback may be moving this list right now; it sees `draining` */
	free_all(c, llist_del_all(&c->waiting_for_gp));
}

static void for_each_cache(struct bpf_mem_alloc *ma, cache_fn fn, void *arg)
{
	int cpu;

	for_each_possible_cpu(cpu)
		for_each_cache_on(ma, cpu, fn, arg);
}

/*
 * A copy that is not set up (unit_size 0) is written only by:
 *  - its owner's fast paths and cache_enter/exit, which take `active` and
 *    give it back (1 then 0), leaving the copy zero;
 *  - a signal handler that interrupted its owner's set-up, or a fast path
 *    just before it: its free goes to free_llist_extra or free_by_rcu, and
 *    the set-up raises the work that takes them once it is published;
 *  - fork(): a thread that vanished inside the set-up leaves it half
 *    written (and `active` taken, which fork_child_reset gives back).
 * So destroy finds objects on those two lists only, and writes nothing
 * else there: pages no CPU wrote stay unbacked in the shared chunk, and
 * pcpu_area_free zeroes the copies that are not zero.
 */
static void reclaim_unset_copy(struct bpf_mem_cache *c, struct bpf_mem_cache *tmpl)
{
	if (!llist_empty(&c->free_llist_extra))
		free_all(tmpl, llist_del_all(&c->free_llist_extra));
	if (!llist_empty(&c->free_by_rcu))
		free_all(tmpl, llist_del_all(&c->free_by_rcu));
}

static void stop_cache(struct bpf_mem_cache *c, struct bpf_mem_cache *tmpl, void *arg)
{
	(void)arg;
	if (!cache_is_set_up(c))
		return;
	atomic_store(&c->draining, true);
	irq_work_sync(&c->refill_work);
}

static void drain_cache(struct bpf_mem_cache *c, struct bpf_mem_cache *tmpl, void *arg)
{
	int *callbacks = arg;

	if (!cache_is_set_up(c)) {
		reclaim_unset_copy(c, tmpl);
		return;
	}
	irq_work_sync(&c->refill_work);
	drain_mem_cache(c);
	*callbacks += atomic_load_explicit(&c->callbacks_queued, memory_order_acquire);
}

static void count_outstanding(struct bpf_mem_cache *c, struct bpf_mem_cache *tmpl, void *arg)
{
	long *outstanding = arg;

	*outstanding += (long)atomic_load(&c->backend_allocs) - (long)atomic_load(&c->backend_frees);
}

__public void bpf_mem_alloc_destroy(struct bpf_mem_alloc *ma)
{
	int callbacks = 0;
	long outstanding = 0;

	if (!ma || (ma->magic != BPFMEM_MAGIC_ANY && ma->magic != BPFMEM_MAGIC_FIXED))
		return;
	ma_unregister(ma);
	for_each_cache(ma, stop_cache, NULL);
	for_each_cache(ma, drain_cache, &callbacks);
	/*
	 * Callbacks still reference the caches: wait for them, then drain what
	 * they moved.  The kernel defers this wait to a workqueue; here destroy
	 * is process context and simply waits.  With `draining` set callbacks
	 * free instead of queueing more, so this ends after a round or two.
	 */
	while (callbacks) {
		irq_work_flush();
		rcu_barrier_all();
		callbacks = 0;
		for_each_cache(ma, drain_cache, &callbacks);
	}
	for_each_cache(ma, count_outstanding, &outstanding);
	if (outstanding)
		bpfmem_warn("bpf_mem_alloc_destroy: %ld object%s still allocated (leaked)",
			    outstanding, outstanding == 1 ? "" : "s");
	for_each_cache_on(ma, SHARED_CPU, destroy_slab, NULL);
	pcpu_area_free(ma_area_of(ma), ma_area_size(ma));
	obj_cgroup_put(ma->objcg);
	memset(ma, 0, sizeof(*ma));
}

/* Every copy on `cpu` of the classes that are set up (copies a CPU has not
 * used yet are zeroed: every list empty, no work queued). */
static void for_each_cache_on(struct bpf_mem_alloc *ma, int cpu, cache_fn fn, void *arg)
{
	void *pcpu = ma_area_of(ma);
	int n = ma->cache ? 1 : NUM_CACHES;

	for (int i = 0; i < n; i++) {
		struct bpf_mem_cache *tmpl = cache_tmpl(pcpu, CACHE_OFF(i));

		if (cache_is_set_up(tmpl))
			fn(cache_on(pcpu, CACHE_OFF(i), cpu), tmpl, arg);
	}
}

/* ---- what the kernel layer calls back: CPU online, fork, RCU barrier ---- */

static void memalloc_cpu_online(int cpu)
{
	pthread_mutex_lock(&ma_lock);
	for (struct bpf_mem_alloc *ma = ma_list; ma; ma = ma->next_ma)
		for_each_cache_on(ma, cpu, setup_on_cpu, NULL);
	pthread_mutex_unlock(&ma_lock);
}

static void memalloc_before_fork(void)
{
	pthread_mutex_lock(&ma_lock);
	pthread_mutex_lock(&ttrace_lock);
	inline_gate_close();
}

static void memalloc_after_fork_parent(void)
{
	inline_gate_open();
	pthread_mutex_unlock(&ttrace_lock);
	pthread_mutex_unlock(&ma_lock);
}

/*
 * Threads that vanished in the fork may have been anywhere in the library:
 * inside a cache (its guard stays taken), between claiming a reuse slot and
 * filling it (the slot stays busy; the chain they held is lost with them),
 * or between marking the refill work pending and queueing it (no raise
 * would ever queue it again, and destroy would wait for it forever).
 */
static void fork_child_reset(struct bpf_mem_cache *c, struct bpf_mem_cache *tmpl, void *arg)
{
	int self = *(int *)arg;

	/* a copy not set up: only a set-up the fork cut short took `active`
	 * (read first: writing would back the page of every CPU's copy) */
	if (!cache_is_set_up(c)) {
		if (c->active.counter)
			c->active.counter = 0;
		return;
	}
	if (c->cpu != self)
		c->active.counter = 0;
	atomic_store(&c->shared_lock, 0);
	for (int i = 0; i < REUSE_SLOTS; i++) {
		struct llist_node *busy = REUSE_BUSY;

		atomic_compare_exchange_strong(&c->reuse_chain[i], &busy, NULL);
	}
	irq_work_fork_fixup(&c->refill_work);
}

static void memalloc_after_fork_child(void)
{
	int self = bpfmem_current_cpu();

	for (struct bpf_mem_alloc *ma = ma_list; ma; ma = ma->next_ma)
		for_each_cache(ma, fork_child_reset, &self);
	inline_gate_open();
	pthread_mutex_unlock(&ttrace_lock);
	pthread_mutex_unlock(&ma_lock);
}

/* Objects move RCU -> tasks trace -> (RCU) -> backend, and each stage's
 * callback chains what batched up behind it. */
static bool rcu_stages_pending(void)
{
	return atomic_load_explicit(&rcu_stages_in_flight, memory_order_acquire);
}

static void rcu_local_flush(struct bpf_mem_cache *c, struct bpf_mem_cache *tmpl, void *arg)
{
	bool raise = false;

	(void)tmpl;
	(void)arg;
	if (!c->rcu_local_first)	/* ours: this is the caller's CPU */
		return;
	if (local_inc_return(&c->active) == 1 && c->rcu_local_first)
		raise = rcu_local_publish(c, true);
	local_dec(&c->active);
	if (raise)
		irq_work_queue(&c->refill_work);
}

/* Before a barrier: the caller's own *_free_rcu batches start their grace
 * periods, so a thread that frees and then waits finds its objects back. */
static void rcu_local_flush_this_cpu(void)
{
	int cpu = bpfmem_current_cpu();

	if (cpu < 0)
		return;
	pthread_mutex_lock(&ma_lock);
	for (struct bpf_mem_alloc *ma = ma_list; ma; ma = ma->next_ma)
		for_each_cache_on(ma, cpu, rcu_local_flush, NULL);
	pthread_mutex_unlock(&ma_lock);
}

static struct cpu_online_notifier memalloc_cpuhp = { .online = memalloc_cpu_online };
static struct rcu_pending_query memalloc_rcu_pending = {
	.pending = rcu_stages_pending,
	.flush = rcu_local_flush_this_cpu,
};
static struct fork_notifier memalloc_fork = {
	.prepare = memalloc_before_fork,
	.parent = memalloc_after_fork_parent,
	.child = memalloc_after_fork_child,
	.priority = FORK_PRIO_USER,
};

/* At load time: before any allocator exists, so none can miss a CPU
 * coming online or a fork. */
__attribute__((constructor)) static void memalloc_register(void)
{
	register_cpu_online_notifier(&memalloc_cpuhp);
	register_rcu_pending_query(&memalloc_rcu_pending);
	register_fork_notifier(&memalloc_fork);
}
