/* SPDX-License-Identifier: MIT */
/* The public RCU calls and the fork hooks of both RCU domains. */
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

/*
 * Objects move RCU -> tasks trace -> (RCU again unless implied) -> backend,
 * and the refill work is what queues the first callback; so: flush the
 * work, then one barrier per stage, in stage order.
 */
__public void bpfmem_rcu_barrier(void)
{
	irq_work_flush();
	rcudom_normal_barrier();
	RCU_TRACE(barrier)();
	if (!rcu_trace_implies_rcu_gp())
		rcudom_normal_barrier();
}

void rcu_before_fork(void)
{
	rcudom_normal_before_fork();
#if !BPFMEM_RCU_SAME_FLAVOR
	rcudom_trace_before_fork();
#endif
}

void rcu_after_fork_parent(void)
{
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
}
