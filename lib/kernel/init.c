/* SPDX-License-Identifier: MIT */
/*
 * Library start-up and fork().  The constructor sizes the virtual CPUs and
 * registers one set of fork handlers that walks the fork notifier chain.
 */
#include <errno.h>
#include <pthread.h>

#include "bug.h"
#include "cpu.h"
#include "init.h"
#include "irq_work.h"
#include "percpu.h"
#include "rcu.h"

/* Sorted by decreasing priority.  Held from prepare until parent/child
 * have run, so the chain a fork walks cannot change halfway. */
static pthread_mutex_t chain_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fork_notifier *chain;

void register_fork_notifier(struct fork_notifier *nb)
{
	struct fork_notifier **pos;

	pthread_mutex_lock(&chain_lock);
	for (pos = &chain; *pos && (*pos)->priority >= nb->priority; pos = &(*pos)->next)
		;
	nb->next = *pos;
	*pos = nb;
	pthread_mutex_unlock(&chain_lock);
}

static void prepare(void)
{
	pthread_mutex_lock(&chain_lock);
	for (struct fork_notifier *nb = chain; nb; nb = nb->next)
		if (nb->prepare)
			nb->prepare();
}

/* Increasing priority: the chain backwards, without a back link. */
static void run_after(struct fork_notifier *nb, bool child)
{
	if (!nb)
		return;
	run_after(nb->next, child);
	if (child && nb->child)
		nb->child();
	else if (!child && nb->parent)
		nb->parent();
}

static void parent(void)
{
	run_after(chain, false);
	pthread_mutex_unlock(&chain_lock);
}

static void child(void)
{
	run_after(chain, true);
	pthread_mutex_unlock(&chain_lock);
}

static struct fork_notifier warn_fork = {
	.prepare = warn_before_fork,
	.parent = warn_after_fork_parent,
	.child = warn_after_fork_child,
	.priority = FORK_PRIO_WARN,
};

static struct fork_notifier pcpu_fork = {
	.prepare = pcpu_before_fork,
	.parent = pcpu_after_fork,
	.child = pcpu_after_fork,
	.priority = FORK_PRIO_PCPU,
};

static struct fork_notifier irq_work_fork = {
	.prepare = irq_work_before_fork,
	.parent = irq_work_after_fork_parent,
	.child = irq_work_after_fork_child,
	.priority = FORK_PRIO_IRQ_WORK,
};

static struct fork_notifier rcu_fork = {
	.prepare = rcu_before_fork,
	.parent = rcu_after_fork_parent,
	.child = rcu_after_fork_child,
	.priority = FORK_PRIO_RCU,
};

static struct fork_notifier cpu_fork = {
	.child = cpu_fork_child,
	.priority = FORK_PRIO_CPU,
};

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void runtime_init_once(void)
{
	/* on failure nr_cpu_ids stays 0 and every allocator init fails */
	if (cpu_init())
		bpfmem_warn("cannot set up virtual CPUs: out of memory");
	register_fork_notifier(&warn_fork);
	register_fork_notifier(&pcpu_fork);
	register_fork_notifier(&irq_work_fork);
	register_fork_notifier(&rcu_fork);
	register_fork_notifier(&cpu_fork);
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
