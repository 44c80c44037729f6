/* SPDX-License-Identifier: MIT */
/*
 * irq_work: deferred work raised from any context, signal handlers
 * included, and run by the refill thread.  Raising is lock-free and
 * deduplicated while the work is pending, like irq_work_queue(): the only
 * syscall is one eventfd write per wake-up of the thread.  A lazy raise
 * (the kernel's IRQ_WORK_LAZY, which waits for the next tick instead of
 * sending an interrupt) writes nothing while the thread is ticking.  A
 * work item never runs concurrently with itself.
 */
#ifndef BPFMEM_KERNEL_IRQ_WORK_H
#define BPFMEM_KERNEL_IRQ_WORK_H

#include <stdbool.h>
#include "compiler.h"
#include "llist.h"

#define IRQ_WORK_PENDING	1u	/* queued, not yet started */
#define IRQ_WORK_BUSY		2u	/* queued or running */
#define IRQ_WORK_LAZY		4u	/* queued by a lazy raise, waiting for the tick */

struct irq_work {
	struct llist_node llnode;	/* link in the global queue while PENDING */
	_Atomic unsigned int flags;	/* PENDING|BUSY: set by raisers, cleared by the worker */
	void (*func)(struct irq_work *);
};

static inline void init_irq_work(struct irq_work *work, void (*func)(struct irq_work *))
{
	work->llnode.next = NULL;
	atomic_init(&work->flags, 0);
	work->func = func;
}

bool __irq_work_queue(struct irq_work *work, bool lazy) __hidden;

/* AS.  Queue `work` unless it is already pending, and have it run as soon
 * as the thread gets a CPU; false if it was pending.  A work pending from
 * a lazy raise is still woken for. */
static __always_inline bool irq_work_queue(struct irq_work *work)
{
	/* a plain load first: a pending work costs no atomic RMW */
	if ((atomic_load_explicit(&work->flags, memory_order_relaxed) &
	     (IRQ_WORK_PENDING | IRQ_WORK_LAZY)) == IRQ_WORK_PENDING)
		return false;
	return __irq_work_queue(work, false);
}

/* AS.  The same for work nobody waits for: it runs at the thread's next
 * tick (at most IRQ_WORK_TICK_MS away) if the thread is ticking, which
 * costs the raiser no system call; otherwise as irq_work_queue(). */
static __always_inline bool irq_work_queue_lazy(struct irq_work *work)
{
	if (atomic_load_explicit(&work->flags, memory_order_relaxed) & IRQ_WORK_PENDING)
		return false;
	return __irq_work_queue(work, true);
}

static inline bool irq_work_is_busy(struct irq_work *work)
{
	return atomic_load_explicit(&work->flags, memory_order_acquire) & IRQ_WORK_BUSY;
}

/* P.  Wait until `work` is neither pending nor running. */
void irq_work_sync(struct irq_work *work) __hidden;
/* P.  Wait until every work queued before the call has run. */
void irq_work_flush(void) __hidden;
/* The thread's tick while lazy work comes in, and how many ticks without
 * any it keeps ticking before it sleeps until written to. */
#define IRQ_WORK_TICK_MS	1
#define IRQ_WORK_IDLE_TICKS	100

#if BPFMEM_TEST_SEAMS
/* Test build only: eventfd writes raisers made to wake the thread, and
 * whether it ticks (lazy raises then write nothing). */
extern _Atomic unsigned long irq_work_seam_kicks __hidden;
bool irq_work_seam_ticking(void) __hidden;
#endif

/* P.  Start the refill thread if it is not running: 0 or -errno. */
int irq_work_start(void) __hidden;

/* fork child, single-threaded: a raiser that vanished in fork() between
 * marking `work` pending and queueing it left it pending and unqueued, so
 * no later raise would queue it; queue it now. */
void irq_work_fork_fixup(struct irq_work *work) __hidden;

void irq_work_before_fork(void) __hidden;
void irq_work_after_fork_parent(void) __hidden;
void irq_work_after_fork_child(void) __hidden;

#endif /* BPFMEM_KERNEL_IRQ_WORK_H */
