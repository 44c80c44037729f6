/* SPDX-License-Identifier: MIT */
/*
 * RCU and RCU tasks trace, each backed by a liburcu flavor chosen at
 * configure time (rcu_flavor.c is compiled once per distinct flavor).
 * When both domains use the same flavor, one grace period is both, and
 * rcu_trace_implies_rcu_gp() is true.
 */
#ifndef BPFMEM_KERNEL_RCU_H
#define BPFMEM_KERNEL_RCU_H

#include <stdbool.h>
#include <urcu/call-rcu.h>	/* struct rcu_head */
#include "compiler.h"

#define RCU_DOMAIN_DECLARE(d)						\
	void rcudom_##d##_read_lock(void) __hidden;			\
	void rcudom_##d##_read_unlock(void) __hidden;			\
	void rcudom_##d##_synchronize(void) __hidden;			\
	void rcudom_##d##_call(struct rcu_head *head,			\
			       void (*func)(struct rcu_head *)) __hidden;	\
	void rcudom_##d##_call_ready(void) __hidden;			\
	void rcudom_##d##_barrier(void) __hidden;			\
	void rcudom_##d##_register(void) __hidden;			\
	void rcudom_##d##_enter_callback(void) __hidden;		\
	void rcudom_##d##_unregister(void) __hidden;			\
	void rcudom_##d##_before_fork(void) __hidden;			\
	void rcudom_##d##_after_fork_parent(void) __hidden;		\
	void rcudom_##d##_after_fork_child(void) __hidden;

RCU_DOMAIN_DECLARE(normal)
#if BPFMEM_RCU_SAME_FLAVOR
#define RCU_TRACE(fn) rcudom_normal_##fn
#else
RCU_DOMAIN_DECLARE(trace)
#define RCU_TRACE(fn) rcudom_trace_##fn
#endif

static inline bool rcu_trace_implies_rcu_gp(void)
{
	return BPFMEM_RCU_SAME_FLAVOR;
}

/* P.  RCU, on a grace-period thread of its own that never waits for a
 * timer (rcu_hurry.c); func runs on that thread, after a grace period. */
void call_rcu_hurry(struct rcu_head *head, void (*func)(struct rcu_head *)) __hidden;
/* P.  Wait for the call_rcu_hurry() callbacks queued before the call. */
void rcu_hurry_barrier(void) __hidden;
void rcu_hurry_park_for_fork(void) __hidden;
void rcu_hurry_before_fork(void) __hidden;
void rcu_hurry_after_fork_parent(void) __hidden;
void rcu_hurry_after_fork_child(void) __hidden;

static inline void call_rcu_tasks_trace(struct rcu_head *head, void (*func)(struct rcu_head *))
{
	RCU_TRACE(call)(head, func);
}

/* P.  One barrier per stage, in stage order: RCU, tasks trace, and RCU
 * again unless implied. */
static inline void rcu_barrier_all(void)
{
	rcu_hurry_barrier();
	RCU_TRACE(barrier)();
	if (!rcu_trace_implies_rcu_gp())
		rcu_hurry_barrier();
}

/*
 * ThreadSanitizer cannot see the ordering liburcu provides (it is not
 * instrumented): a reader's accesses happen before the callbacks and
 * synchronize calls of later grace periods, and call_rcu() happens before
 * its callback.  Tell it, with one token standing for "a grace period".
 */
#ifdef __SANITIZE_THREAD__
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char rcu_tsan_gp_token __hidden;
static inline void rcu_tsan_callback_begin(struct rcu_head *head)
{
	__tsan_acquire(head);
	__tsan_acquire(&rcu_tsan_gp_token);
}
static inline void rcu_callback_end(void)
{
	__tsan_release(&rcu_tsan_gp_token);
}
#else
static inline void rcu_tsan_callback_begin(struct rcu_head *head)
{
	(void)head;
}
static inline void rcu_callback_end(void)
{
}
#endif

/* First thing in a callback queued with call_rcu_hurry(). */
static inline void rcu_callback_begin(struct rcu_head *head)
{
	rcu_tsan_callback_begin(head);
	rcudom_normal_enter_callback();
}

/* First thing in a callback queued with call_rcu_tasks_trace(). */
static inline void rcu_trace_callback_begin(struct rcu_head *head)
{
	rcu_tsan_callback_begin(head);
	RCU_TRACE(enter_callback)();
}

/* P.  Register the calling thread with both domains (no-op for bp). */
static inline void rcu_thread_online(void)
{
	rcudom_normal_register();
	RCU_TRACE(register)();
}

/* P.  Leave both domains' registries (no-op for bp). */
static inline void rcu_thread_offline(void)
{
	rcudom_normal_unregister();
	RCU_TRACE(unregister)();
}

/*
 * bpfmem_rcu_barrier() waits for every RCU callback the library queued,
 * also those a callback or a deferred work queues after the call started
 * (a batch that waited behind the callback in flight).  Whoever queues
 * such chains registers a query that says whether one is still in flight,
 * and may hand on first what the calling thread holds back (`flush`, P).
 * Queries are never removed; `q` must stay valid for the life of the
 * process.
 */
struct rcu_pending_query {
	bool (*pending)(void);
	void (*flush)(void);
	struct rcu_pending_query *next;
};

/* Any context but a signal handler; lock-free. */
void register_rcu_pending_query(struct rcu_pending_query *q) __hidden;

void rcu_before_fork(void) __hidden;
void rcu_after_fork_parent(void) __hidden;
void rcu_after_fork_child(void) __hidden;

#endif /* BPFMEM_KERNEL_RCU_H */
