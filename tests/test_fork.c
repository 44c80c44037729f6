/* SPDX-License-Identifier: MIT */
/*
 * fork() while other threads allocate, free and free with RCU: the child
 * uses what it inherited, creates new allocators and waits for RCU; the
 * parent carries on as if nothing happened.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <bpfmem.h>
#include "memalloc.h"
#include "kernel/irq_work.h"
#include "kernel/percpu.h"
#include "kernel/slab.h"
#include "helpers.h"

#if defined(__SANITIZE_THREAD__)
/* The library restarts its threads in the child, which is the point here. */
const char *__tsan_default_options(void)
{
	return "die_after_fork=0";
}
#endif

/* a sanitized process has gigabytes of shadow mappings: each fork costs
 * a few hundred milliseconds there */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FORKS		5
#else
#define FORKS		12
#endif
#define WORKERS		2
#define CHILD_OBJS	300
#define CHILD_TIMEOUT	20	/* seconds: a hung child fails instead of hanging */
#define FIXED_SIZE	48
#define WATCHDOG_SECONDS 90

static struct bpf_mem_alloc any_ma, fixed_ma;
static _Atomic bool stop;
static _Atomic long worker_rounds, corrupted;

static const size_t sizes[] = { 8, 24, 56, 88, 120, 184, 248, 504, 1016, 2040, 4088 };
#define NR_SIZES (sizeof(sizes) / sizeof(sizes[0]))

static _Atomic int warnings;

static void count_warning(const char *msg, void *arg)
{
	(void)msg;
	(void)arg;
	atomic_fetch_add(&warnings, 1);
}

static long slab_outstanding(void)
{
	struct slab_stats st;

	slab_get_stats(&st);
	return st.allocs - st.frees;
}

/* NULL only while a refill is in flight: wait for the refill thread. */
static void *alloc_wait(struct bpf_mem_alloc *ma, size_t size)
{
	void *obj = NULL;

	for (int i = 0; i < 1000; i++) {
		obj = size ? bpf_mem_alloc(ma, size) : bpf_mem_cache_alloc(ma);
		if (obj)
			break;
		irq_work_flush();
	}
	return obj;
}

/* ---- parent threads that keep the allocators busy across fork ---- */

static void *churn(void *arg)
{
	unsigned int id = (unsigned int)(uintptr_t)arg;
	void *obj[16];

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (int i = 0; i < 16; i++) {
			size_t sz = sizes[(i + id) % NR_SIZES];

			obj[i] = bpf_mem_alloc(&any_ma, sz);
			if (obj[i])
				memset(obj[i], (int)id + 1, sz);
		}
		for (int i = 0; i < 16; i++) {
			size_t sz = sizes[(i + id) % NR_SIZES];

			if (!obj[i])
				continue;
			if (((unsigned char *)obj[i])[sz - 1] != id + 1)
				atomic_fetch_add(&corrupted, 1);
			/* half of them wait for a grace period: RCU work in flight */
			if (i & 1)
				bpf_mem_free_rcu(&any_ma, obj[i]);
			else
				bpf_mem_free(&any_ma, obj[i]);
		}
		void *f = bpf_mem_cache_alloc(&fixed_ma);

		bpf_mem_cache_free_rcu(&fixed_ma, f);
		atomic_fetch_add(&worker_rounds, 1);
	}
	return NULL;
}

static pthread_t workers[WORKERS];
static bool workers_joined;
static long outstanding_at_start;

static void stop_workers(void)
{
	if (workers_joined)
		return;
	atomic_store(&stop, true);
	for (int i = 0; i < WORKERS; i++)
		pthread_join(workers[i], NULL);
	workers_joined = true;
}

static int setup(void **state)
{
	(void)state;
	outstanding_at_start = slab_outstanding();
	atomic_store(&warnings, 0);
	atomic_store(&stop, false);
	atomic_store(&corrupted, 0);
	bpfmem_set_warn_handler(count_warning, NULL);
	if (bpf_mem_alloc_init(&any_ma, 0, false) ||
	    bpf_mem_alloc_init(&fixed_ma, FIXED_SIZE, false))
		return -1;
	for (uintptr_t i = 0; i < WORKERS; i++)
		if (pthread_create(&workers[i], NULL, churn, (void *)i))
			return -1;
	/* forks happen while the workers are in full swing */
	while (atomic_load(&worker_rounds) < 100)
		sched_yield();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	stop_workers();
	bpf_mem_alloc_destroy(&any_ma);
	bpf_mem_alloc_destroy(&fixed_ma);
	bpfmem_set_warn_handler(NULL, NULL);
	return 0;
}

/* ---- what the child does; exit status 0 or the step that failed ---- */

enum child_fail {
	CHILD_OK,
	CHILD_ALLOC_NULL,
	CHILD_CORRUPTED,
	CHILD_INIT,
	CHILD_WARNED,
	CHILD_RCU_PENDING,
	CHILD_NO_REFILL,
};

static int child_inherited(void)
{
	void *obj[CHILD_OBJS];

	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < CHILD_OBJS; i++) {
			obj[i] = alloc_wait(&any_ma, sizes[i % NR_SIZES]);
			if (!obj[i])
				return CHILD_ALLOC_NULL;
			memset(obj[i], 0x5a, sizes[i % NR_SIZES]);
		}
		for (int i = 0; i < CHILD_OBJS; i++) {
			if (((unsigned char *)obj[i])[sizes[i % NR_SIZES] - 1] != 0x5a)
				return CHILD_CORRUPTED;
			if (i & 1)
				bpf_mem_free_rcu(&any_ma, obj[i]);
			else
				bpf_mem_free(&any_ma, obj[i]);
		}
		for (int i = 0; i < CHILD_OBJS; i++) {
			obj[i] = alloc_wait(&fixed_ma, 0);
			if (!obj[i])
				return CHILD_ALLOC_NULL;
		}
		for (int i = 0; i < CHILD_OBJS; i++) {
			if (i & 1)
				bpf_mem_cache_free_rcu(&fixed_ma, obj[i]);
			else
				bpf_mem_cache_free(&fixed_ma, obj[i]);
		}
	}
	bpfmem_rcu_barrier();
	return CHILD_OK;
}

/*
 * Inherited RCU work finishes in the child at any time, so the backend's
 * global counts move: destroy's own leak report is the per-allocator check.
 */
static int child_new_allocator(void)
{
	static struct bpf_mem_alloc ma;
	void *obj[CHILD_OBJS];

	if (bpf_mem_alloc_init(&ma, 0, false))
		return CHILD_INIT;
	for (int i = 0; i < CHILD_OBJS; i++) {
		obj[i] = alloc_wait(&ma, sizes[i % NR_SIZES]);
		if (!obj[i])
			return CHILD_ALLOC_NULL;
	}
	for (int i = 0; i < CHILD_OBJS; i++)
		bpf_mem_free_rcu(&ma, obj[i]);
	bpf_mem_alloc_destroy(&ma);
	bpfmem_rcu_barrier();
	if (atomic_load(&warnings))
		return CHILD_WARNED;
	return CHILD_OK;
}

/* Objects freed with RCU before bpfmem_rcu_barrier() have left the RCU
 * lists when it returns. */
static int child_rcu_barrier(void)
{
	static struct bpf_mem_alloc ma;
	void *obj[CHILD_OBJS];
	int cpu, ret = CHILD_OK;

	if (bpf_mem_alloc_init(&ma, FIXED_SIZE, false))
		return CHILD_INIT;
	for (int i = 0; i < CHILD_OBJS; i++) {
		obj[i] = alloc_wait(&ma, 0);
		if (!obj[i])
			return CHILD_ALLOC_NULL;
	}
	for (int i = 0; i < CHILD_OBJS; i++)
		bpf_mem_cache_free_rcu(&ma, obj[i]);
	bpfmem_rcu_barrier();
	for_each_possible_cpu(cpu) {
		struct bpf_mem_cache *c = t_cache(&ma, 0, cpu);

		if (!llist_empty(&c->free_by_rcu) || atomic_load(&c->rcu_out) ||
		    !llist_empty(&c->waiting_for_gp) ||
		    c->free_by_rcu_ttrace.first || c->waiting_for_gp_ttrace.first)
			ret = CHILD_RCU_PENDING;
	}
	bpf_mem_alloc_destroy(&ma);
	return ret;
}

/*
 * ThreadSanitizer keeps the parent's threads registered in the child; the
 * refill thread the library restarts there reuses a vanished thread's stack,
 * so TSan stops the child on its "dup thread with used id" check (exit 66)
 * before the child's own checks run.  Under TSan only the parent's side of
 * fork() is checked (its handlers against the busy threads); the plain and
 * ASan builds check the children.
 */
#if defined(__SANITIZE_THREAD__)
#define TSAN_CHILD_EXIT 66
#endif

static void fork_and_check(int (*body)(void))
{
	int tsan_stopped = 0;

	for (int i = 0; i < FORKS; i++) {
		int status;
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			alarm(CHILD_TIMEOUT);
			_exit(body());
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (WIFSIGNALED(status))
			fail_msg("child %d killed by signal %d", i, WTERMSIG(status));
		assert_true(WIFEXITED(status));
#ifdef TSAN_CHILD_EXIT
		if (WEXITSTATUS(status) == TSAN_CHILD_EXIT) {
			tsan_stopped++;
			continue;
		}
#endif
		assert_int_equal(WEXITSTATUS(status), CHILD_OK);
	}
	if (tsan_stopped)
		print_message("%d of %d children stopped by ThreadSanitizer\n",
			      tsan_stopped, FORKS);
}

static void test_child_uses_inherited_allocators_while_parent_threads_churn(void **state)
{
	(void)state;
	fork_and_check(child_inherited);
}

static void test_child_creates_and_destroys_new_allocator(void **state)
{
	(void)state;
	fork_and_check(child_new_allocator);
}

static void test_child_rcu_barrier_waits_for_its_free_rcu_objects(void **state)
{
	(void)state;
	fork_and_check(child_rcu_barrier);
}

/* ---- guards and slots held by a thread that vanishes in the fork ---- */

/*
 * A parent thread that is inside a cache when another thread forks leaves
 * that cache's guard held in the child, where it has no owner any more; one
 * that claimed a reuse slot and had not filled it leaves the slot busy.  A
 * thread cannot be frozen inside the library on demand, so the parked
 * thread takes the guards the way the library does on entry (the `active`
 * count of its own vCPU's cache, the shared CPU's lock), claims every free
 * reuse slot of that cache, and holds them across the fork.  The child
 * attaches to that vCPU and must allocate, through refills.
 */
static struct {
	sem_t held, release;
	int cpu;
} parked;

static void *hold_guards_across_fork(void *arg)
{
	struct bpf_mem_cache *c = NULL;

	(void)arg;
	/* attached implicitly, by a first allocation: an explicit attach
	 * would register the thread with RCU, and with memb/mb a thread
	 * registered at fork makes the child's grace periods unsafe (README) */
	bpf_mem_cache_free(&fixed_ma, bpf_mem_cache_alloc(&fixed_ma));
	parked.cpu = bpfmem_current_cpu();
	if (parked.cpu >= 0) {
		c = t_cache(&fixed_ma, 0, parked.cpu);
		local_inc_return(&c->active);
		atomic_store(&t_cache(&fixed_ma, 0, SHARED_CPU)->shared_lock, 1);
		/* as a producer between claiming a reuse slot and filling it */
		t_slots_block(c);
	}
	sem_post(&parked.held);
	while (sem_wait(&parked.release))
		;
	if (c) {
		t_slots_release(c);
		atomic_store(&t_cache(&fixed_ma, 0, SHARED_CPU)->shared_lock, 0);
		local_dec(&c->active);
	}
	return NULL;
}

/* More objects than the vCPU's cache held come from that cache: its
 * refills reached it (borrowing from the shared CPU does not count, nor
 * what the owner took from the backend itself). */
static int child_on_vanished_threads_vcpu(void)
{
	struct bpf_mem_cache *c = t_cache(&fixed_ma, 0, parked.cpu);
	void *obj[CHILD_OBJS];
	long cached, own = 0;

	if (bpfmem_thread_attach(parked.cpu, 0))
		return CHILD_INIT;
	cached = t_free_cnt(c) + (long)t_mailbox_cnt(c) -
		 (long)atomic_load(&c->inline_refills) * c->batch;
	for (int i = 0; i < CHILD_OBJS; i++) {
		obj[i] = alloc_wait(&fixed_ma, 0);
		if (!obj[i])
			return CHILD_ALLOC_NULL;
		own += t_owner(obj[i]) == c;
		irq_work_flush();	/* the refill this raised has landed */
	}
	cached += (long)atomic_load(&c->inline_refills) * c->batch;
	for (int i = 0; i < CHILD_OBJS; i++)
		bpf_mem_cache_free(&fixed_ma, obj[i]);
	return own > cached ? CHILD_OK : CHILD_NO_REFILL;
}

static void test_child_finds_no_guard_or_slot_held_by_a_vanished_thread(void **state)
{
	pthread_t t;

	(void)state;
	sem_init(&parked.held, 0, 0);
	sem_init(&parked.release, 0, 0);
	assert_int_equal(pthread_create(&t, NULL, hold_guards_across_fork, NULL), 0);
	while (sem_wait(&parked.held))
		;
	if (parked.cpu >= 0)
		fork_and_check(child_on_vanished_threads_vcpu);
	sem_post(&parked.release);
	assert_int_equal(pthread_join(t, NULL), 0);
	sem_destroy(&parked.held);
	sem_destroy(&parked.release);
	if (parked.cpu < 0)
		fail_msg("no free vCPU for the thread holding the guards");
}

/* ---- the parent afterwards ---- */

static void test_parent_keeps_working_after_forks(void **state)
{
	long rounds_before;
	static struct bpf_mem_alloc ma;
	void *obj[CHILD_OBJS];

	(void)state;
	fork_and_check(child_new_allocator);
	/* the workers still run ... */
	rounds_before = atomic_load(&worker_rounds);
	while (atomic_load(&worker_rounds) < rounds_before + 100)
		sched_yield();
	/* ... refills still happen (the refill thread survived) ... */
	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (int i = 0; i < CHILD_OBJS; i++) {
		obj[i] = alloc_wait(&ma, 248);
		assert_non_null(obj[i]);
	}
	for (int i = 0; i < CHILD_OBJS; i++)
		bpf_mem_free_rcu(&ma, obj[i]);
	/* ... and RCU callbacks still run */
	bpfmem_rcu_barrier();
	/* the workers churn on: destroy's leak report is the balance check */
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(atomic_load(&corrupted), 0);
	assert_int_equal(atomic_load(&warnings), 0);
}

/* ---- fork against the owner's own refills (from the backend) ---- */

#define BIG		4088	/* the 4096 class: batch 3, runs dry at once */
#define BIG_OBJS	16

/* The seams act for one thread only: the workers refill inline too. */
static _Atomic(pthread_t) seam_thread;
static sem_t refill_entered, refill_go;
static _Atomic int refill_held, refill_finished, fork_waited;

static bool seam_mine(void)
{
	return pthread_equal(pthread_self(), atomic_load(&seam_thread));
}

/* The thread's first inline refill stops while it holds the backend's objects. */
static void hold_first_refill(void)
{
	if (!seam_mine() || atomic_exchange(&refill_held, 1))
		return;
	sem_post(&refill_entered);
	while (sem_wait(&refill_go))
		;
	atomic_store(&refill_finished, 1);
}

/* Fork preparation is about to wait for it: let it finish. */
static void release_the_refill(void)
{
	atomic_store(&fork_waited, 1);
	sem_post(&refill_go);
}

struct refiller {
	struct bpf_mem_alloc *ma;
	void *obj[BIG_OBJS];
	int n;
};

/* Allocates until its list, prefilled at attach, runs dry. */
static void *refiller_main(void *arg)
{
	struct refiller *r = arg;

	atomic_store(&seam_thread, pthread_self());
	if (bpfmem_thread_attach(bpfmem_nr_cpus() - 1, 0))	/* no worker's */
		return NULL;
	while (r->n < BIG_OBJS && !atomic_load(&refill_held))
		r->obj[r->n++] = bpf_mem_alloc(r->ma, BIG);
	return NULL;
}

/* The child's exit status 0, or TSan stopped it before it ran (see above). */
static void assert_child_ok(pid_t pid)
{
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
#ifdef TSAN_CHILD_EXIT
	if (WEXITSTATUS(status) == TSAN_CHILD_EXIT)
		return;
#endif
	assert_int_equal(WEXITSTATUS(status), 0);
}

/*
 * Another thread (t) is held inside a step by a test hook (`seam`); fork
 * now.  Fork preparation must wait for that step, releasing it through
 * memalloc_seam_fork_waits (which posts `go`); the child reports with
 * child()'s exit status what it found.
 */
static void fork_while_held(pthread_t t, sem_t *go, int (*child)(void),
			    void (*_Atomic *seam)(void))
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(child());
	if (!atomic_load(&fork_waited))
		sem_post(go);	/* fork did not wait: do not leave it stuck */
	assert_int_equal(pthread_join(t, NULL), 0);
	atomic_store(seam, NULL);
	memalloc_seam_fork_waits = NULL;
	assert_true(pid > 0);
	assert_true(atomic_load(&fork_waited));
	assert_child_ok(pid);
}

static int refill_child(void)
{
	return atomic_load(&refill_finished) ? 0 : 1;
}

/*
 * A thread stands inside its inline refill when another forks: the child
 * must see that refill finished (had fork copied it halfway, the child
 * would have lost what the refill held of the backend).
 */
static void test_fork_waits_for_another_threads_inline_refill(void **state)
{
	static struct bpf_mem_alloc ma;
	static struct refiller r;
	struct llist_node *ready[REUSE_SLOTS];
	struct bpf_mem_cache *c;
	pthread_t t;

	(void)state;
	memset(&r, 0, sizeof(r));
	r.ma = &ma;
	atomic_store(&refill_held, 0);
	atomic_store(&refill_finished, 0);
	atomic_store(&fork_waited, 0);
	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	c = t_cache(&ma, t_class_idx(BIG + T_HDR), bpfmem_nr_cpus() - 1);
	t_slots_take(c, ready);
	sem_init(&refill_entered, 0, 0);
	sem_init(&refill_go, 0, 0);
	memalloc_seam_inline_refill = hold_first_refill;
	memalloc_seam_fork_waits = release_the_refill;
	assert_int_equal(pthread_create(&t, NULL, refiller_main, &r), 0);
	while (sem_wait(&refill_entered))
		;
	fork_while_held(t, &refill_go, refill_child, &memalloc_seam_inline_refill);
	assert_true(r.n > 0);
	t_slots_give_back(c, ready);
	while (r.n) {
		assert_non_null(r.obj[--r.n]);
		bpf_mem_free(&ma, r.obj[r.n]);
	}
	bpf_mem_alloc_destroy(&ma);
}

static sem_t take_entered, take_go;

static void hold_the_take(void)
{
	if (!seam_mine())
		return;
	sem_post(&take_entered);
	while (sem_wait(&take_go))
		;
}

static void release_the_take(void)
{
	atomic_store(&fork_waited, 1);
	sem_post(&take_go);
}

struct taker {
	struct bpf_mem_alloc *ma;
	sem_t attached, go;
	void *obj;
};

static void *taker_main(void *arg)
{
	struct taker *k = arg;

	atomic_store(&seam_thread, pthread_self());
	if (bpfmem_thread_attach(bpfmem_nr_cpus() - 1, 0))	/* no worker's */
		return NULL;
	sem_post(&k->attached);
	while (sem_wait(&k->go))
		;
	k->obj = bpf_mem_cache_alloc(k->ma);
	return NULL;
}

#define LONG_CHAIN 200

static struct bpf_mem_cache *take_cache;
static int take_cnt;

/* Every object of the chain on the taker's list or parked; its own
 * allocation may have taken one since. */
static int take_child(void)
{
	int found = (int)llist_count(take_cache->free_llist.first) +
		    (int)llist_count(take_cache->parked);

	return found >= take_cnt - 1 && found <= take_cnt ? 0 : 1;
}

/*
 * A thread stands inside the take of a long ready chain, a piece of it off
 * the slot and not yet on its list, when another forks: the child must
 * find every object of the chain on that cache's list or parked (had fork
 * copied the take halfway, the piece would be lost with the thread).
 */
static void test_fork_waits_for_another_threads_take_of_a_long_chain(void **state)
{
	static struct bpf_mem_alloc ma;
	static struct taker k;
	struct llist_node *ready[REUSE_SLOTS], *chain = NULL;
	struct bpf_mem_cache *c;
	pthread_t t;
	int cnt;

	(void)state;
	memset(&k, 0, sizeof(k));
	k.ma = &ma;
	atomic_store(&fork_waited, 0);
	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	sem_init(&k.attached, 0, 0);
	sem_init(&k.go, 0, 0);
	sem_init(&take_entered, 0, 0);
	sem_init(&take_go, 0, 0);
	assert_int_equal(pthread_create(&t, NULL, taker_main, &k), 0);
	while (sem_wait(&k.attached))
		;
	/* its list empty, one long chain ready: the next allocation takes it */
	c = t_cache(&ma, 0, bpfmem_nr_cpus() - 1);
	t_slots_take(c, ready);
	cnt = t_free_cnt(c);
	chain = c->free_llist.first;
	c->free_llist.first = NULL;
	atomic_store(&c->free_cnt, 0);
	for (int i = 0; i < LONG_CHAIN; i++) {
		struct llist_node *n = (struct llist_node *)((char *)bpf_mem_cache_alloc(&ma) - T_HDR);

		n->next = chain;
		chain = n;
	}
	cnt += LONG_CHAIN;
	atomic_store(&c->reuse_cnt[0], cnt);
	atomic_store(&c->reuse_chain[0], chain);
	memalloc_seam_take = hold_the_take;
	memalloc_seam_fork_waits = release_the_take;
	sem_post(&k.go);
	while (sem_wait(&take_entered))
		;
	take_cache = c;
	take_cnt = cnt;
	fork_while_held(t, &take_go, take_child, &memalloc_seam_take);
	assert_non_null(k.obj);
	assert_null(atomic_load(&c->reuse_chain[0]));	/* taken */
	t_slots_give_back(c, ready);
	bpf_mem_cache_free(&ma, k.obj);
	bpf_mem_alloc_destroy(&ma);
}

static _Atomic int forked_inside;
static pid_t inner_child;

/* A handler that interrupted the refill calls fork(). */
static void fork_inside_the_refill(void)
{
	if (!seam_mine() || atomic_exchange(&forked_inside, 1))
		return;
	inner_child = fork();
}

/*
 * fork() from inside this thread's own inline refill (a handler calling
 * it) cannot wait for that refill, which ends only after the fork; in the
 * child the refill finishes and later ones run again (the gate is open).
 */
static void test_fork_from_inside_an_inline_refill_does_not_wait_for_it(void **state)
{
	static struct bpf_mem_alloc ma;
	static void *p[BIG_OBJS];
	struct llist_node *ready[REUSE_SLOTS];
	struct bpf_mem_cache *c;
	int n = 0;

	(void)state;
	atomic_store(&forked_inside, 0);
	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	bpf_mem_free(&ma, bpf_mem_alloc(&ma, BIG));
	irq_work_flush();
	c = t_cache(&ma, t_class_idx(BIG + T_HDR), bpfmem_current_cpu());
	t_slots_take(c, ready);
	atomic_store(&seam_thread, pthread_self());
	memalloc_seam_inline_refill = fork_inside_the_refill;
	while (n < BIG_OBJS && !atomic_load(&forked_inside))
		p[n++] = bpf_mem_alloc(&ma, BIG);
	memalloc_seam_inline_refill = NULL;
	assert_true(atomic_load(&forked_inside));
	if (inner_child == 0) {
		unsigned long refills = atomic_load(&c->inline_refills);
		bool ok = p[n - 1] != NULL;

		alarm(CHILD_TIMEOUT);
		for (int i = 0; i < BIG_OBJS && ok; i++)
			ok = bpf_mem_alloc(&ma, BIG) != NULL;
		_exit(ok && atomic_load(&c->inline_refills) > refills ? 0 : 1);
	}
	assert_true(inner_child > 0);
	assert_child_ok(inner_child);
	t_slots_give_back(c, ready);
	while (n)
		bpf_mem_free(&ma, p[--n]);
	bpf_mem_alloc_destroy(&ma);
}

/* A fork that never returns in the parent cannot be caught by the child's
 * alarm: fail the whole binary instead of waiting for the ctest timeout. */
static void watchdog(int sig)
{
	static const char msg[] = "test_fork: watchdog: no progress (fork or RCU hung)\n";
	ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);

	(void)sig;
	(void)ignored;
	_exit(2);
}

/* Last: whatever the parent's threads and forks did, nothing is lost. */
static void test_parent_returns_everything_to_backend_after_forks(void **state)
{
	(void)state;
	stop_workers();
	bpf_mem_alloc_destroy(&any_ma);
	bpf_mem_alloc_destroy(&fixed_ma);
	assert_int_equal(slab_outstanding(), outstanding_at_start);
	assert_int_equal(atomic_load(&corrupted), 0);
	assert_int_equal(atomic_load(&warnings), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_child_uses_inherited_allocators_while_parent_threads_churn),
		cmocka_unit_test(test_child_creates_and_destroys_new_allocator),
		cmocka_unit_test(test_child_rcu_barrier_waits_for_its_free_rcu_objects),
		cmocka_unit_test(test_child_finds_no_guard_or_slot_held_by_a_vanished_thread),
		cmocka_unit_test(test_parent_keeps_working_after_forks),
		cmocka_unit_test(test_fork_waits_for_another_threads_inline_refill),
		cmocka_unit_test(test_fork_waits_for_another_threads_take_of_a_long_chain),
		cmocka_unit_test(test_fork_from_inside_an_inline_refill_does_not_wait_for_it),
		cmocka_unit_test(test_parent_returns_everything_to_backend_after_forks),
	};

	signal(SIGALRM, watchdog);
	alarm(WATCHDOG_SECONDS);
	return t_run_group(tests, setup, teardown);
}
