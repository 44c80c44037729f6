/* SPDX-License-Identifier: MIT */
/*
 * One RCU domain over one liburcu flavor.  Compiled once per domain with
 * BPFMEM_RCU_DOMAIN (normal|trace), BPFMEM_URCU_HEADER (the flavor's header)
 * and BPFMEM_URCU_BP (1 for the bulletproof flavor) defined by CMake.
 */
#define URCU_API_MAP		/* keep the generic names mapped to this flavor */
#include BPFMEM_URCU_HEADER
#include <pthread.h>
#include <stdbool.h>

#include "compiler.h"

/* rcu.h cannot be included here: the flavor's name map would rewrite it. */
#ifdef __SANITIZE_THREAD__
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char rcu_tsan_gp_token __hidden;
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define DOMAIN_FN(fn) CAT(CAT(CAT(rcudom_, BPFMEM_RCU_DOMAIN), _), fn)

/*
 * memb and mb need every reader, and every caller of call_rcu/rcu_barrier,
 * registered; registration allocates and locks, so it happens here, in
 * process context, and is undone by the key destructor at thread exit.
 * bp registers lazily by itself.
 */
#if !BPFMEM_URCU_BP
static __tls_ie bool registered;
static pthread_key_t unregister_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void unregister_at_exit(void *unused)
{
	(void)unused;
	if (registered) {
		rcu_unregister_thread();
		registered = false;
	}
}

static void make_key(void)
{
	pthread_key_create(&unregister_key, unregister_at_exit);
}
#endif

__hidden void DOMAIN_FN(register)(void)
{
#if !BPFMEM_URCU_BP
	if (likely(registered))
		return;
	pthread_once(&key_once, make_key);
	rcu_register_thread();
	registered = true;
	pthread_setspecific(unregister_key, (void *)1);
#endif
}

/*
 * Our callbacks run on liburcu's call_rcu thread of this domain, which
 * liburcu registered itself: note that, so that a callback queueing the
 * next batch does not register the thread a second time (liburcu asserts).
 * liburcu unregisters its own thread, so no exit destructor is armed.
 */
__hidden void DOMAIN_FN(enter_callback)(void)
{
#if !BPFMEM_URCU_BP
	registered = true;
#endif
}

/* Leave the registry (fork: a registered thread that does not exist in the
 * child would stay in memb/mb's reader list there). */
__hidden void DOMAIN_FN(unregister)(void)
{
#if !BPFMEM_URCU_BP
	if (registered) {
		rcu_unregister_thread();
		registered = false;
	}
#endif
}

__hidden void DOMAIN_FN(read_lock)(void)
{
	DOMAIN_FN(register)();
	rcu_read_lock();
}

__hidden void DOMAIN_FN(read_unlock)(void)
{
#ifdef __SANITIZE_THREAD__
	__tsan_release(&rcu_tsan_gp_token);
#endif
	rcu_read_unlock();
}

__hidden void DOMAIN_FN(synchronize)(void)
{
	DOMAIN_FN(register)();
	synchronize_rcu();
#ifdef __SANITIZE_THREAD__
	__tsan_acquire(&rcu_tsan_gp_token);
#endif
}

/*
 * call_rcu needs a registered caller.  A thread that is not registered here
 * (the other domain's call_rcu thread, passing objects on) registers only
 * for the call: liburcu cannot take it out of our registry when it pauses
 * that thread for fork, and a stale entry would stall or crash the child.
 */
__hidden void DOMAIN_FN(call)(struct rcu_head *head, void (*func)(struct rcu_head *))
{
#if !BPFMEM_URCU_BP
	bool temporary = !registered;

	if (temporary)
		rcu_register_thread();
#endif
#ifdef __SANITIZE_THREAD__
	__tsan_release(head);
#endif
	call_rcu(head, func);
#if !BPFMEM_URCU_BP
	if (temporary)
		rcu_unregister_thread();
#endif
}

/* Make liburcu create its call_rcu thread now, in the caller's context. */
__hidden void DOMAIN_FN(call_ready)(void)
{
	(void)get_default_call_rcu_data();
}

__hidden void DOMAIN_FN(barrier)(void)
{
	DOMAIN_FN(register)();
	rcu_barrier();
#ifdef __SANITIZE_THREAD__
	__tsan_acquire(&rcu_tsan_gp_token);
#endif
}

/* liburcu's fork rules: pause the call_rcu threads around fork() and, for
 * bp, its registry too; the child re-creates what it needs. */
__hidden void DOMAIN_FN(before_fork)(void)
{
	call_rcu_before_fork();
#if BPFMEM_URCU_BP
	urcu_bp_before_fork();
#endif
}

__hidden void DOMAIN_FN(after_fork_parent)(void)
{
#if BPFMEM_URCU_BP
	urcu_bp_after_fork_parent();
#endif
	call_rcu_after_fork_parent();
}

__hidden void DOMAIN_FN(after_fork_child)(void)
{
#if BPFMEM_URCU_BP
	urcu_bp_after_fork_child();
#endif
	call_rcu_after_fork_child();
}
