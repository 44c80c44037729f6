/* SPDX-License-Identifier: MIT */
/*
 * Library start-up, and fork() notifier chains: each facility, and the
 * allocator above them, registers what it must do around fork() instead of
 * this layer calling up into it (the kernel's notifier chains).
 */
#ifndef BPFMEM_KERNEL_INIT_H
#define BPFMEM_KERNEL_INIT_H

#include "compiler.h"

/* P.  Idempotent: virtual CPUs and fork handlers.  0 or -ENOMEM. */
int bpfmem_runtime_init(void) __hidden;

/*
 * Around fork(): `prepare` in the parent before it, then `parent` in the
 * parent or `child` in the child after it; any may be NULL.  Prepare runs
 * in decreasing priority, parent and child in increasing priority, so a
 * layer that prepares first resumes last.
 */
struct fork_notifier {
	void (*prepare)(void);
	void (*parent)(void);
	void (*child)(void);
	int priority;
	struct fork_notifier *next;	/* the chain, under the chain's lock */
};

/*
 * The kernel layer's own priorities.  The refill thread parks first (its
 * work calls call_rcu, which needs the urcu-bp registry lock that RCU's
 * prepare holds across fork()), then liburcu's threads pause; a user of
 * the layer takes its locks after both.  In the child virtual CPUs are
 * released first, RCU restarts before the refill thread that registers
 * with it.
 */
#define FORK_PRIO_WARN		400	/* a leaf lock: first or last, either way */
#define FORK_PRIO_PCPU		400	/* the cache areas' chunk list: a leaf lock too */
#define FORK_PRIO_IRQ_WORK	300
#define FORK_PRIO_RCU		200
#define FORK_PRIO_USER		100	/* locks of the layer's users */
#define FORK_PRIO_CPU		0

/* P.  `nb` must stay valid for the life of the process. */
void register_fork_notifier(struct fork_notifier *nb) __hidden;

#endif /* BPFMEM_KERNEL_INIT_H */
