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
 * irq_work): the refill thread allocates a batch and hands it over.  Above
 * the high watermark the free detaches the coldest objects down to the
 * middle and hands them to the refill thread, which queues them for an RCU
 * tasks-trace grace period (then an RCU one unless implied) before they go
 * back to the backend; until then the refill of their cache may recycle
 * them, so memory stays type-stable for RCU readers.
 *
 * Unlike irq_work, the refill thread runs at the same time as the owner, on
 * another core.  So the owner's free_llist is never touched by it: finished
 * batches and trimmed objects travel through single-slot mailboxes, and
 * everything else through lock-free llists.  The fast path (pop or push on
 * a list that needs no refill or trim) has no lock, no syscall and no atomic
 * read-modify-write.
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

static const unsigned char size_index[24] = {
	2, 2,		/* 1..16   -> 16 */
	3, 3,		/* 17..32  -> 32 */
	4, 4, 4, 4,	/* 33..64  -> 64 */
	0, 0, 0, 0,	/* 65..96  -> 96 */
	5, 5, 5, 5,	/* 97..128 -> 128 */
	1, 1, 1, 1, 1, 1, 1, 1,	/* 129..192 -> 192 */
};

static __always_inline int fls(unsigned int x)
{
	return x ? 32 - __builtin_clz(x) : 0;
}

static __always_inline int bpf_mem_cache_idx(size_t size)
{
	if (!size || size > BPF_MEM_ALLOC_SIZE_MAX)
		return -1;
	if (size <= 192)
		return size_index[(size - 1) / 8];
	return fls(size - 1) - 2;
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

static void *__alloc(struct bpf_mem_cache *c)
{
	void **obj;

	if (obj_cgroup_charge(c->objcg, obj_charge(c)))
		return NULL;
	if (c->percpu_size) {
		/* [llist node / owner][per-CPU pointer]: the caller gets &obj[1] */
		obj = kmalloc(c->percpu_size);
		void *pptr = obj ? __alloc_percpu(c->unit_size) : NULL;

		if (!pptr) {
			kfree(obj);
			obj = NULL;
		} else {
			obj[1] = pptr;
		}
	} else {
		obj = kmalloc(c->unit_size);
	}
	if (!obj) {
		obj_cgroup_uncharge(c->objcg, obj_charge(c));
		return NULL;
	}
	atomic_fetch_add_explicit(&c->backend_allocs, 1, memory_order_relaxed);
	debug_poison(c, (struct llist_node *)obj);
	return obj;
}

static void free_one(struct bpf_mem_cache *c, void *obj)
{
	if (c->percpu_size)
		free_percpu(((void **)obj)[1]);
	kfree(obj);
	obj_cgroup_uncharge(c->objcg, obj_charge(c));
	atomic_fetch_add_explicit(&c->backend_frees, 1, memory_order_relaxed);
}

static void free_all(struct bpf_mem_cache *c, struct llist_node *llnode)
{
	struct llist_node *pos, *t;

	llist_for_each_safe(pos, t, llnode)
		free_one(c, pos);
}

/* ---- mailboxes (see struct bpf_mem_cache) ---- */

static bool mailbox_empty(struct llist_head *box)
{
	return atomic_load_explicit(&box->first, memory_order_relaxed) == NULL;
}

/* The producer: called only by the box's single producer, when empty. */
static void mailbox_put(struct llist_head *box, struct llist_node *chain)
{
	atomic_store_explicit(&box->first, chain, memory_order_release);
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

/*
 * Gather up to `cnt` objects: first the ones re-entrant frees left on
 * free_llist_extra, then trimmed objects still waiting for a tasks-trace
 * grace period (type-stable reuse), only then the backend.  `direct` (init
 * only, before anyone can use the cache) fills free_llist itself; otherwise
 * the batch goes to the owner's mailbox.
 */
static void alloc_bulk(struct bpf_mem_cache *c, int cnt, bool direct)
{
	struct llist_node *head = NULL, *tail = NULL, *pos, *t;
	int i = 0;

	llist_for_each_safe(pos, t, llist_del_all(&c->free_llist_extra)) {
		add_to_chain(&head, &tail, pos);
		i++;
	}
	if (i < cnt) {
		pthread_mutex_lock(&ttrace_lock);
		while (i < cnt && (pos = __llist_del_first(&c->free_by_rcu_ttrace))) {
			add_to_chain(&head, &tail, pos);
			i++;
		}
		while (i < cnt && (pos = __llist_del_first(&c->waiting_for_gp_ttrace))) {
			add_to_chain(&head, &tail, pos);
			i++;
		}
		pthread_mutex_unlock(&ttrace_lock);
	}
	for (; i < cnt; i++) {
		pos = __alloc(c);
		if (!pos)
			break;
		add_to_chain(&head, &tail, pos);
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
	/* the caller saw the box empty, and we are its only producer */
	atomic_store_explicit(&c->refill_cnt, i, memory_order_relaxed);
	mailbox_put(&c->refill_llist, head);
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

/* Both grace periods are over for waiting_for_gp_ttrace: free it. */
static void free_rcu_stage(struct bpf_mem_cache *c)
{
	struct llist_node *llnode;
	bool again;

	pthread_mutex_lock(&ttrace_lock);
	llnode = __llist_del_all(&c->waiting_for_gp_ttrace);
	/* what batched up behind this grace period starts the next one now:
	 * the kernel waits for the next refill, a process may not have one */
	again = c->free_by_rcu_ttrace.first && !atomic_load(&c->draining);
	if (again)
		ttrace_stage_queue(c);
	pthread_mutex_unlock(&ttrace_lock);
	free_all(c, llnode);
	if (!again)
		stage_end(&c->call_rcu_ttrace_in_progress);
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

/* Trimmed objects and re-entrant frees go to their origin cache's
 * tasks-trace path (the kernel's free_bulk). */
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

/* Called with call_rcu_in_progress set: start the RCU grace period of
 * everything on free_by_rcu.  False if there was nothing. */
static bool rcu_stage_queue(struct bpf_mem_cache *c);

static void __free_by_rcu(struct rcu_head *head)
{
	struct bpf_mem_cache *c = container_of(head, struct bpf_mem_cache, rcu);
	struct llist_node *llnode;

	rcu_callback_begin(head);
	llnode = llist_del_all(&c->waiting_for_gp);
	/* RCU grace period done: on to the tasks-trace one */
	debug_poison_list(c, llnode);
	if (llnode)
		enque_to_free_and_call(origin_hint(c), llnode, c->waiting_for_gp_tail);
	/* frees that batched up behind this callback start their grace period
	 * now: the kernel waits for the next refill, a process may not have one */
	if (atomic_load(&c->draining) || !rcu_stage_queue(c)) {
		stage_end(&c->call_rcu_in_progress);
		/* a free that came after the check above saw a callback in
		 * flight and did not raise the work */
		if (!llist_empty(&c->free_by_rcu) && !atomic_load(&c->draining))
			irq_work_queue(&c->refill_work);
	}
	rcu_callback_end();
	callback_done(c);
}

static bool rcu_stage_queue(struct bpf_mem_cache *c)
{
	struct llist_node *llnode = llist_del_all(&c->free_by_rcu);

	if (!llnode)
		return false;
	WARN_ON_ONCE(!llist_empty(&c->waiting_for_gp));
	c->waiting_for_gp_tail = llist_last(llnode);
	atomic_store_explicit(&c->waiting_for_gp.first, llnode, memory_order_release);
	callback_queued(c);
	call_rcu_hurry(&c->rcu, __free_by_rcu);
	return true;
}

/* One RCU callback in flight per cache; later frees batch up behind it. */
static void check_free_by_rcu(struct bpf_mem_cache *c)
{
	if (llist_empty(&c->free_by_rcu))
		return;
	if (!stage_start(&c->call_rcu_in_progress))
		return;
	if (!rcu_stage_queue(c))
		stage_end(&c->call_rcu_in_progress);
}

static void bpf_mem_refill(struct irq_work *work)
{
	struct bpf_mem_cache *c = container_of(work, struct bpf_mem_cache, refill_work);

	if (unlikely(atomic_load(&c->draining)))
		return;		/* destroy frees every list itself */
	/* racy read of free_cnt: it need not be exact */
	if (atomic_load_explicit(&c->free_cnt, memory_order_relaxed) < c->low_watermark &&
	    mailbox_empty(&c->refill_llist))
		alloc_bulk(c, c->batch, false);
	if (!mailbox_empty(&c->trim_llist) || !llist_empty(&c->free_llist_extra))
		free_bulk(c);
	check_free_by_rcu(c);
}

/* ---- the owner's side ---- */

/*
 * Inside the critical section, at or below the low watermark: append a
 * waiting refill batch to free_llist (behind the objects already there, so
 * the last object freed is still the next one handed out), else, the list
 * being empty, take back our own trim the refill thread has not taken yet.
 */
static void take_mailboxes(struct bpf_mem_cache *c)
{
	struct llist_node *batch = atomic_load_explicit(&c->refill_llist.first,
							memory_order_acquire);
	struct llist_node **end = &c->free_llist.first;

	if (batch) {
		/* read before emptying the box: then the producer cannot
		 * have started the next batch */
		int n = atomic_load_explicit(&c->refill_cnt, memory_order_relaxed);

		atomic_store_explicit(&c->refill_llist.first, NULL, memory_order_relaxed);
		while (*end)		/* at most low_watermark hops */
			end = &(*end)->next;
		*end = batch;
		free_cnt_add(c, n);
		return;
	}
	if (c->free_llist.first)
		return;
	batch = llist_del_all(&c->trim_llist);
	if (batch) {
		c->free_llist.first = batch;
		free_cnt_add(c, (int)llist_count(batch));
	}
}

/*
 * Above the high watermark: keep the (low+high)/2 most recently freed
 * objects, which are the cache-hot ones, and hand the rest to the refill
 * thread.  The owner is the box's only producer but it adds with a CAS, so
 * a refill thread that is slow to come (a busy machine) cannot make the
 * private list grow past the high watermark.
 */
static bool trim(struct bpf_mem_cache *c)
{
	int keep = (c->low_watermark + c->high_watermark) / 2;
	struct llist_node *last = c->free_llist.first, *cut, *tail;

	for (int i = 1; i < keep; i++) {
		if (!last->next)
			return false;
		last = last->next;
	}
	cut = last->next;
	if (!cut)
		return false;
	for (tail = cut; tail->next; tail = tail->next)
		;
	last->next = NULL;
	llist_add_batch(cut, tail, &c->trim_llist);
	atomic_store_explicit(&c->free_cnt, keep, memory_order_relaxed);
	atomic_store_explicit(&c->trims,
			      atomic_load_explicit(&c->trims, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	return true;
}

/*
 * The whole unit_alloc of the kernel, for every case: the shared CPU, an
 * empty or low list, re-entry.  unit_alloc() below inlines its common case.
 */
static __noinline void *unit_alloc_slow(struct bpf_mem_cache *c, bool shared)
{
	struct llist_node *llnode = NULL;
	struct cache_guard g = cache_enter(c, shared);
	int cnt = 0;

	if (likely(g.entered)) {
		if (atomic_load_explicit(&c->free_cnt, memory_order_relaxed) <= c->low_watermark)
			take_mailboxes(c);
		llnode = __llist_del_first(&c->free_llist);
		if (likely(llnode)) {
			cnt = free_cnt_add(c, -1);
			debug_obj_allocated(c, llnode);
			*(struct bpf_mem_cache **)llnode = c;
		}
	}
	cache_exit(c, shared, g);

	/* a batch waiting in the mailbox is taken at the next allocation */
	if (cnt < c->low_watermark && mailbox_empty(&c->refill_llist))
		irq_work_queue(&c->refill_work);
	/* an empty private cache (e.g. a virtual CPU's first use, before its
	 * refill lands) borrows from the shared CPU */
	if (unlikely(!llnode) && !shared && c->shared)
		return unit_alloc_slow(c->shared, true);
	return llnode;
}

/* The common case: an owned CPU whose list is above the low watermark. */
static __always_inline void *unit_alloc(struct bpf_mem_cache *c)
{
	if (likely(local_try_enter(&c->active))) {
		struct llist_node *llnode = c->free_llist.first;
		int cnt = atomic_load_explicit(&c->free_cnt, memory_order_relaxed);

		if (likely(llnode && cnt > c->low_watermark)) {
			c->free_llist.first = llnode->next;
			atomic_store_explicit(&c->free_cnt, cnt - 1, memory_order_relaxed);
			debug_obj_allocated(c, llnode);
			*(struct bpf_mem_cache **)llnode = c;
			local_exit(&c->active);
			return llnode;
		}
		local_exit(&c->active);
	}
	return unit_alloc_slow(c, false);
}

static __noinline void unit_free_slow(struct bpf_mem_cache *c, struct llist_node *llnode,
				      bool shared)
{
	struct cache_guard g = cache_enter(c, shared);
	bool trimmed = false;

	if (likely(g.entered)) {
		int cnt;

		__llist_add(llnode, &c->free_llist);
		cnt = free_cnt_add(c, 1);
		if (cnt > c->high_watermark)
			trimmed = trim(c);
	} else {
		/* A free cannot fail: park it on the atomic list; the refill
		 * drains it.  Atomic because a handler may interrupt this. */
		llist_add(llnode, &c->free_llist_extra);
	}
	cache_exit(c, shared, g);

	if (unlikely(trimmed))
		irq_work_queue(&c->refill_work);
}

static __always_inline void unit_free(struct bpf_mem_cache *c, void *ptr)
{
	struct llist_node *llnode = (struct llist_node *)((char *)ptr - LLIST_NODE_SZ);

	if (!debug_obj_freed(c, llnode, true))
		return;
	/* remember the cache that allocated it (the hint need not be exact) */
	atomic_store_explicit(&c->tgt, *(struct bpf_mem_cache **)llnode, memory_order_relaxed);

	if (likely(local_try_enter(&c->active))) {
		int cnt = atomic_load_explicit(&c->free_cnt, memory_order_relaxed);

		if (likely(cnt < c->high_watermark)) {
			__llist_add(llnode, &c->free_llist);
			atomic_store_explicit(&c->free_cnt, cnt + 1, memory_order_relaxed);
			local_exit(&c->active);
			return;
		}
		local_exit(&c->active);
	}
	unit_free_slow(c, llnode, false);
}

static void unit_free_rcu(struct bpf_mem_cache *c, void *ptr)
{
	struct llist_node *llnode = (struct llist_node *)((char *)ptr - LLIST_NODE_SZ);

	/* readers may still look at it: poisoned after the grace period */
	if (!debug_obj_freed(c, llnode, false))
		return;
	atomic_store_explicit(&c->tgt, *(struct bpf_mem_cache **)llnode, memory_order_relaxed);
	/*
	 * In the kernel free_by_rcu is private to the CPU and a twin
	 * free_llist_extra_rcu takes re-entrant frees.  Here the refill thread
	 * must take the list from another core, so it is an atomic list from
	 * the start, which every context may push to; no twin is needed.
	 */
	llist_add(llnode, &c->free_by_rcu);
	if (!atomic_load_explicit(&c->call_rcu_in_progress, memory_order_relaxed))
		irq_work_queue(&c->refill_work);
}

/* ---- from an allocator to the caller's cache ---- */

static __always_inline struct bpf_mem_cache *cache_on(void *pcpu, size_t stride, size_t off,
						      int cpu)
{
	return (struct bpf_mem_cache *)((char *)pcpu + (size_t)cpu * stride + off);
}

/* First use on this thread, or no virtual CPU free. */
static __noinline void *cache_alloc_slow(void *pcpu, size_t stride, size_t off)
{
	int cpu = smp_processor_id();

	return unit_alloc_slow(cache_on(pcpu, stride, off, cpu), cpu == SHARED_CPU);
}

static __noinline void cache_free_slow(void *pcpu, size_t stride, size_t off, void *ptr)
{
	struct llist_node *llnode = (struct llist_node *)((char *)ptr - LLIST_NODE_SZ);
	int cpu = smp_processor_id();
	struct bpf_mem_cache *c = cache_on(pcpu, stride, off, cpu);

	if (!debug_obj_freed(c, llnode, true))
		return;
	atomic_store_explicit(&c->tgt, *(struct bpf_mem_cache **)llnode, memory_order_relaxed);
	unit_free_slow(c, llnode, cpu == SHARED_CPU);
}

static __always_inline void *cache_alloc(void *pcpu, size_t stride, size_t off)
{
	int cpu = bpfmem_this_cpu;
	void *ret;

	if (likely(cpu >= 0))
		ret = unit_alloc(cache_on(pcpu, stride, off, cpu));
	else
		ret = cache_alloc_slow(pcpu, stride, off);
	return ret ? (char *)ret + LLIST_NODE_SZ : NULL;
}

static __always_inline void cache_free(void *pcpu, size_t stride, size_t off, void *ptr)
{
	int cpu = bpfmem_this_cpu;

	if (likely(cpu >= 0))
		unit_free(cache_on(pcpu, stride, off, cpu), ptr);
	else
		cache_free_slow(pcpu, stride, off, ptr);
}

static __always_inline struct bpf_mem_cache *owner_cache(void *ptr)
{
	return *(struct bpf_mem_cache **)((char *)ptr - LLIST_NODE_SZ);
}

#define CACHE_OFF(idx) ((size_t)(idx) * sizeof(struct bpf_mem_cache))

__public void *bpf_mem_alloc(struct bpf_mem_alloc *ma, size_t size)
{
	int idx;

	if (unlikely(!ma || ma->magic != BPFMEM_MAGIC_ANY || !size ||
		     size > BPF_MEM_ALLOC_SIZE_MAX))
		return NULL;
	if (!ma->percpu)
		size += LLIST_NODE_SZ;
	idx = bpf_mem_cache_idx(size);
	if (unlikely(idx < 0))
		return NULL;
	return cache_alloc(ma->caches, CACHES_STRIDE, CACHE_OFF(idx));
}

__public void bpf_mem_free(struct bpf_mem_alloc *ma, void *ptr)
{
	if (unlikely(!ptr || !ma || ma->magic != BPFMEM_MAGIC_ANY))
		return;
	if (!debug_header_ok(ma->caches, CACHES_STRIDE, ptr))
		return;
	cache_free(ma->caches, CACHES_STRIDE, owner_cache(ptr)->class_off, ptr);
}

static void free_rcu_to(void *pcpu, size_t stride, size_t off, void *ptr)
{
	unit_free_rcu(cache_on(pcpu, stride, off, smp_processor_id()), ptr);
}

__public void bpf_mem_free_rcu(struct bpf_mem_alloc *ma, void *ptr)
{
	if (unlikely(!ptr || !ma || ma->magic != BPFMEM_MAGIC_ANY))
		return;
	if (!debug_header_ok(ma->caches, CACHES_STRIDE, ptr))
		return;
	free_rcu_to(ma->caches, CACHES_STRIDE, owner_cache(ptr)->class_off, ptr);
}

__public void *bpf_mem_cache_alloc(struct bpf_mem_alloc *ma)
{
	if (unlikely(!ma || ma->magic != BPFMEM_MAGIC_FIXED))
		return NULL;
	return cache_alloc(ma->cache, CACHE_STRIDE, 0);
}

__public void bpf_mem_cache_free(struct bpf_mem_alloc *ma, void *ptr)
{
	if (unlikely(!ptr || !ma || ma->magic != BPFMEM_MAGIC_FIXED))
		return;
	cache_free(ma->cache, CACHE_STRIDE, 0, ptr);
}

__public void bpf_mem_cache_free_rcu(struct bpf_mem_alloc *ma, void *ptr)
{
	if (unlikely(!ptr || !ma || ma->magic != BPFMEM_MAGIC_FIXED))
		return;
	free_rcu_to(ma->cache, CACHE_STRIDE, 0, ptr);
}

__public void bpf_mem_cache_raw_free(void *ptr)
{
	if (!ptr)
		return;
	free_one(owner_cache(ptr), (char *)ptr - LLIST_NODE_SZ);
}

__public void *bpf_mem_cache_alloc_flags(struct bpf_mem_alloc *ma, unsigned int gfp)
{
	struct bpf_mem_cache *c;
	void *ret;

	if (unlikely(gfp & ~BPFMEM_GFP_KERNEL))
		return NULL;
	ret = bpf_mem_cache_alloc(ma);
	if (ret || gfp != BPFMEM_GFP_KERNEL || !ma || ma->magic != BPFMEM_MAGIC_FIXED)
		return ret;
	/* may block: straight to the backend, as the kernel does for GFP_KERNEL */
	c = cache_on(ma->cache, CACHE_STRIDE, 0, smp_processor_id());
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

static void init_refill_work(struct bpf_mem_cache *c)
{
	init_irq_work(&c->refill_work, bpf_mem_refill);
	if (c->percpu_size) {
		c->low_watermark = 1;
		c->high_watermark = 3;
	} else if (c->unit_size <= 256) {
		c->low_watermark = 32;
		c->high_watermark = 96;
	} else {
		/* 4096-byte units: low 2, high 6, batch 3; 8192 and up: 1, 3, 1 */
		c->low_watermark = max(32 * 256 / c->unit_size, 1);
		c->high_watermark = max(96 * 256 / c->unit_size, 3);
	}
	c->batch = max((c->high_watermark - c->low_watermark) / 4 * 3, 1);
}

/*
 * Prefill the CPUs in use now (and the shared one); the others are filled
 * by their first refill, and borrow from the shared CPU until it lands.
 * Assume a first run does no more than 4 small allocations per CPU.
 */
static void prefill_mem_cache(struct bpf_mem_cache *c, int cpu)
{
	int cnt = 1;

	if (cpu != SHARED_CPU && cpu != bpfmem_current_cpu() && !cpu_in_use(cpu))
		return;
	if (!c->percpu_size && c->unit_size <= 256)
		cnt = 4;
	alloc_bulk(c, cnt, true);
	c->prefilled = true;
}

/* The caller owns `cpu` now; its own handlers may use the cache, hence
 * `active`. */
static void prefill_on_attach(struct bpf_mem_cache *c, void *arg)
{
	int cpu = *(int *)arg;

	if (c->cpu != cpu || c->prefilled)
		return;
	if (local_inc_return(&c->active) == 1) {
		prefill_mem_cache(c, cpu);
		c->prefilled = true;
	}
	local_dec(&c->active);
}

static void init_cache(struct bpf_mem_cache *c, void *pcpu, size_t stride, size_t off,
		       int cpu, int unit_size, int percpu_size, struct bpfmem_objcg *objcg)
{
	c->unit_size = unit_size;
	c->class_off = off;
	c->percpu_size = percpu_size;
	c->objcg = objcg;
	c->cpu = cpu;
	c->shared = cache_on(pcpu, stride, off, SHARED_CPU);
	c->pcpu_base = pcpu;
	c->pcpu_stride = stride;
	atomic_store_explicit(&c->tgt, c, memory_order_relaxed);
	init_refill_work(c);
	prefill_mem_cache(c, cpu);
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

__public int bpf_mem_alloc_init(struct bpf_mem_alloc *ma, int size, bool percpu)
{
	int cpu, i, unit_size, percpu_size = 0;
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

	pcpu = __alloc_percpu(size ? CACHE_STRIDE : CACHES_STRIDE);
	if (!pcpu)
		return -ENOMEM;
	objcg = get_obj_cgroup_from_current();
	ma->objcg = objcg;

	if (size) {
		unit_size = percpu ? size : size + (int)LLIST_NODE_SZ;
		for_each_possible_cpu(cpu)
			init_cache(cache_on(pcpu, CACHE_STRIDE, 0, cpu), pcpu, CACHE_STRIDE, 0, cpu,
				   unit_size, percpu_size, objcg);
		ma->cache = pcpu;
		ma->magic = BPFMEM_MAGIC_FIXED;
	} else {
		for_each_possible_cpu(cpu)
			for (i = 0; i < NUM_CACHES; i++)
				init_cache(cache_on(pcpu, CACHES_STRIDE, CACHE_OFF(i), cpu), pcpu,
					   CACHES_STRIDE, CACHE_OFF(i), cpu, bpf_mem_sizes[i],
					   percpu_size, objcg);
		ma->caches = pcpu;
		ma->magic = BPFMEM_MAGIC_ANY;
	}
	ma_register(ma);
	return 0;
}

__public int bpf_mem_alloc_percpu_init(struct bpf_mem_alloc *ma, struct bpfmem_objcg *objcg)
{
	void *pcpu;
	int err = ma_prepare(ma);

	if (err)
		return err;
	pcpu = __alloc_percpu(CACHES_STRIDE);
	if (!pcpu)
		return -ENOMEM;
	ma->caches = pcpu;
	ma->objcg = obj_cgroup_get(objcg);
	ma->percpu = true;
	ma->magic = BPFMEM_MAGIC_ANY;
	ma_register(ma);
	return 0;
}

__public int bpf_mem_alloc_percpu_unit_init(struct bpf_mem_alloc *ma, int size)
{
	int cpu, i, percpu_size = LLIST_NODE_SZ + sizeof(void *);

	if (!ma || ma->magic != BPFMEM_MAGIC_ANY || !ma->percpu)
		return -EINVAL;
	i = bpf_mem_cache_idx(size < 0 ? 0 : (size_t)size);
	if (i < 0)
		return -EINVAL;
	/* ma is registered: keep attach-time prefill off half-made caches */
	pthread_mutex_lock(&ma_lock);
	for_each_possible_cpu(cpu) {
		struct bpf_mem_cache *c = cache_on(ma->caches, CACHES_STRIDE, CACHE_OFF(i), cpu);

		if (c->unit_size)
			break;	/* this class was set up before */
		init_cache(c, ma->caches, CACHES_STRIDE, CACHE_OFF(i), cpu, bpf_mem_sizes[i],
			   percpu_size, ma->objcg);
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
	free_all(c, llist_del_all(&c->refill_llist));
	free_all(c, llist_del_all(&c->trim_llist));
	free_all(c, llist_del_all(&c->free_llist_extra));
	free_all(c, llist_del_all(&c->free_by_rcu));
	/* a callback may be moving this list right now; it sees `draining` */
	free_all(c, llist_del_all(&c->waiting_for_gp));
}

typedef void (*cache_fn)(struct bpf_mem_cache *c, void *arg);

static void for_each_cache_on(struct bpf_mem_alloc *ma, int cpu, cache_fn fn, void *arg);

static void for_each_cache(struct bpf_mem_alloc *ma, cache_fn fn, void *arg)
{
	int cpu;

	for_each_possible_cpu(cpu)
		for_each_cache_on(ma, cpu, fn, arg);
}

static void stop_cache(struct bpf_mem_cache *c, void *arg)
{
	(void)arg;
	atomic_store(&c->draining, true);
	irq_work_sync(&c->refill_work);
}

static void drain_cache(struct bpf_mem_cache *c, void *arg)
{
	int *callbacks = arg;

	irq_work_sync(&c->refill_work);
	drain_mem_cache(c);
	*callbacks += atomic_load_explicit(&c->callbacks_queued, memory_order_acquire);
}

static void count_outstanding(struct bpf_mem_cache *c, void *arg)
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
	free_percpu(ma->cache ? (void *)ma->cache : (void *)ma->caches);
	obj_cgroup_put(ma->objcg);
	memset(ma, 0, sizeof(*ma));
}

/*
 * Objects move RCU -> tasks trace -> (RCU) -> backend, a callback chains the
 * next batch of its cache, and the refill work queues the first callback;
 * so flush the work and run a barrier per stage until no callback of the
 * library is in flight.  Objects freed before the call need at most two
 * rounds (one behind a callback already in flight, one of their own); the
 * bound keeps a stream of frees on other threads from holding us forever.
 */
__public void bpfmem_rcu_barrier(void)
{
	for (int round = 0; round < 4; round++) {
		irq_work_flush();
		rcu_barrier_all();
		if (!atomic_load_explicit(&rcu_stages_in_flight, memory_order_acquire))
			break;
	}
}

static void for_each_cache_on(struct bpf_mem_alloc *ma, int cpu, cache_fn fn, void *arg)
{
	if (ma->cache) {
		fn(cache_on(ma->cache, CACHE_STRIDE, 0, cpu), arg);
		return;
	}
	for (int i = 0; i < NUM_CACHES; i++) {
		struct bpf_mem_cache *c = cache_on(ma->caches, CACHES_STRIDE, CACHE_OFF(i), cpu);

		if (c->unit_size)
			fn(c, arg);
	}
}

void memalloc_cpu_online(int cpu)
{
	pthread_mutex_lock(&ma_lock);
	for (struct bpf_mem_alloc *ma = ma_list; ma; ma = ma->next_ma)
		for_each_cache_on(ma, cpu, prefill_on_attach, &cpu);
	pthread_mutex_unlock(&ma_lock);
}

/* ---- fork ---- */

void memalloc_before_fork(void)
{
	pthread_mutex_lock(&ma_lock);
	pthread_mutex_lock(&ttrace_lock);
}

void memalloc_after_fork_parent(void)
{
	pthread_mutex_unlock(&ttrace_lock);
	pthread_mutex_unlock(&ma_lock);
}

/* Threads that vanished in the fork may have been inside a cache. */
static void reset_cache_guards(struct bpf_mem_cache *c, void *arg)
{
	int self = *(int *)arg;

	if (c->cpu != self)
		c->active.counter = 0;
	atomic_store(&c->shared_lock, 0);
}

void memalloc_after_fork_child(void)
{
	int self = bpfmem_current_cpu();

	for (struct bpf_mem_alloc *ma = ma_list; ma; ma = ma->next_ma)
		for_each_cache(ma, reset_cache_guards, &self);
	pthread_mutex_unlock(&ttrace_lock);
	pthread_mutex_unlock(&ma_lock);
}
