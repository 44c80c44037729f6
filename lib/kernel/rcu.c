/* SPDX-License-Identifier: MIT */
/* The public RCU calls (read side, synchronize, barrier) and the fork hooks
 * of both RCU domains. */
#include <bpfmem.h>

#include "irq_work.h"
#include "rcu.h"

__public void bpfmem_rcu_read_lock(void)
{
	rcudom_normal_read_lock();
}

__public void bpfmem_rcu_read_unlock(void)
{
	rcudom_normal_read_unlock();
}

__public void bpfmem_rcu_read_lock_trace(void)
{
	RCU_TRACE(read_lock)();
}

__public void bpfmem_rcu_read_unlock_trace(void)
{
	RCU_TRACE(read_unlock)();
}

__public void bpfmem_synchronize_rcu(void)
{
	rcudom_normal_synchronize();
}

__public void bpfmem_synchronize_rcu_trace(void)
{
	RCU_TRACE(synchronize)();
}

/* Pushed at the head, never removed: readers need only an acquire load. */
static _Atomic(struct rcu_pending_query *) pending_queries;

void register_rcu_pending_query(struct rcu_pending_query *q)
{
	struct rcu_pending_query *first = atomic_load_explicit(&pending_queries,
							       memory_order_relaxed);

	do {
		q->next = first;
	} while (!atomic_compare_exchange_weak_explicit(&pending_queries, &first, q,
							memory_order_release,
							memory_order_relaxed));
}

static bool rcu_work_pending(void)
{
	struct rcu_pending_query *q = atomic_load_explicit(&pending_queries,
							   memory_order_acquire);

	for (; q; q = q->next)
		if (q->pending())
			return true;
	return false;
}

/*
 * Deferred work may queue the first callback, and a callback may queue the
 * next stage or the batch that waited behind it: so flush the work and run
 * a barrier per stage until nobody reports a callback in flight.  Work
 * queued before the call needs at most two rounds (one behind a callback
 * already in flight, one of its own); the bound keeps a stream of frees on
 * other threads from holding us forever.
 */
__public void bpfmem_rcu_barrier(void)
{
	for (struct rcu_pending_query *q = atomic_load_explicit(&pending_queries,
								memory_order_acquire); q; q = q->next)
		if (q->flush)
			q->flush();
	for (int round = 0; round < 4; round++) {
		irq_work_flush();
		rcu_barrier_all();
		if (!rcu_work_pending())
			break;
	}
}

#ifdef __SANITIZE_THREAD__
char rcu_tsan_gp_token;
#endif

/* The hurry thread parks before liburcu takes the grace-period locks, and
 * its queue lock is taken after liburcu paused its call_rcu threads, whose
 * callbacks may queue hurried ones (rcu_hurry.c). */
void rcu_before_fork(void)
{
	rcu_hurry_park_for_fork();
	rcudom_normal_before_fork();
#if !BPFMEM_RCU_SAME_FLAVOR
	rcudom_trace_before_fork();
#endif
	rcu_hurry_before_fork();
}

void rcu_after_fork_parent(void)
{
	rcu_hurry_after_fork_parent();
#if !BPFMEM_RCU_SAME_FLAVOR
	rcudom_trace_after_fork_parent();
#endif
	rcudom_normal_after_fork_parent();
}

void rcu_after_fork_child(void)
{
#if !BPFMEM_RCU_SAME_FLAVOR
	rcudom_trace_after_fork_child();
#endif
	rcudom_normal_after_fork_child();
	rcu_hurry_after_fork_child();
}
