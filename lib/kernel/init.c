/* SPDX-License-Identifier: MIT */
/*
 * Library start-up and fork().  The constructor sizes the virtual CPUs and
 * registers one set of fork handlers that calls each facility in order.
 */
#include <errno.h>
#include <pthread.h>

#include "bug.h"
#include "cpu.h"
#include "init.h"
#include "irq_work.h"
#include "rcu.h"

/*
 * Prepare order matters.  Park the refill thread first: its work calls
 * call_rcu, which may register with liburcu and so needs the registry lock
 * that urcu-bp's before_fork takes and holds across fork().  Then pause
 * liburcu's call_rcu threads (their callbacks take the ttrace lock), then
 * take the allocator locks: no lock is left held by a thread that will not
 * exist in the child.
 */
static void prepare(void)
{
	irq_work_before_fork();
	rcu_before_fork();
	memalloc_before_fork();
}

static void parent(void)
{
	memalloc_after_fork_parent();
	rcu_after_fork_parent();
	irq_work_after_fork_parent();
}

/* liburcu first: the restarted refill thread registers with it */
static void child(void)
{
	cpu_fork_child();
	memalloc_after_fork_child();
	rcu_after_fork_child();
	irq_work_after_fork_child();
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void runtime_init_once(void)
{
	/* on failure nr_cpu_ids stays 0 and every allocator init fails */
	if (cpu_init())
		bpfmem_warn("cannot set up virtual CPUs: out of memory");
	pthread_atfork(prepare, parent, child);
}

int bpfmem_runtime_init(void)
{
	pthread_once(&once, runtime_init_once);
	return nr_cpu_ids ? 0 : -ENOMEM;
}

/* At load time, so that BPFMEM_NR_CPUS is read before any thread can race
 * for it.  Entry points in process context call bpfmem_runtime_init() too,
 * which also keeps this file linked in from the static library. */
__attribute__((constructor)) static void bpfmem_init(void)
{
	bpfmem_runtime_init();
}
