/* SPDX-License-Identifier: MIT */
/* The public RCU read-side and synchronize calls, and the fork hooks of both
 * RCU domains.  bpfmem_rcu_barrier() lives in memalloc.c: it waits for the
 * allocator's own RCU work. */
#include <bpfmem.h>

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

#ifdef __SANITIZE_THREAD__
char rcu_tsan_gp_token;
#endif

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
