/* SPDX-License-Identifier: MIT */
/*
 * Nothing on the owner's path waits for the refill thread: bursts are served
 * from the owner's own list and the chains waiting in its reuse slots, a
 * consumer's trims reach the producer's cache and are taken by it without a
 * refill, and the slots hold a bounded number of objects.  Plus the fixes
 * of the review that touch the same handoffs: the fork child's pending
 * refill, the tasks-trace stage that leaves nothing behind, and per-CPU
 * class set-up while other threads allocate.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel/rcu.h"

#define BURST		128
#define CYCLES		1000

static void *alloc_retry(struct bpf_mem_alloc *ma, size_t size)
{
	for (int i = 0; i < 100000; i++) {
		void *p = size ? bpf_mem_alloc(ma, size) : bpf_mem_cache_alloc(ma);

		if (p)
			return p;
		irq_work_flush();
	}
	fail_msg("no object after 100000 tries with the refill running");
	return NULL;
}

static void free_any(struct bpf_mem_alloc *ma, size_t size, void *p)
{
	if (size)
		bpf_mem_free(ma, p);
	else
		bpf_mem_cache_free(ma, p);
}

/*
 * One warm-up burst with the refill running, then CYCLES bursts of BURST
 * allocations and BURST frees with the refill thread stalled: the objects
 * of the first burst (on the list, and trimmed into the reuse slots) serve
 * every later one.
 */
static void bursts_with_refill_stalled(struct bpf_mem_alloc *ma, size_t size)
{
	static void *p[BURST];
	long nulls = 0;

	for (int i = 0; i < BURST; i++)
		p[i] = alloc_retry(ma, size);
	for (int i = 0; i < BURST; i++)
		free_any(ma, size, p[i]);
	irq_work_flush();
	t_refill_stall();
	for (int c = 0; c < CYCLES; c++) {
		int n = 0;

		for (int i = 0; i < BURST; i++) {
			void *q = size ? bpf_mem_alloc(ma, size) : bpf_mem_cache_alloc(ma);

			if (q)
				p[n++] = q;
			else
				nulls++;
		}
		while (n)
			free_any(ma, size, p[--n]);
	}
	t_refill_resume();
	assert_int_equal(nulls, 0);
}

static void test_fixed_size_bursts_get_no_null_with_the_refill_thread_stalled(void **state)
{
	static struct bpf_mem_alloc ma;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	bursts_with_refill_stalled(&ma, 0);
	bpf_mem_alloc_destroy(&ma);
}

static void test_any_size_bursts_get_no_null_with_the_refill_thread_stalled(void **state)
{
	static struct bpf_mem_alloc ma;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	bursts_with_refill_stalled(&ma, 56);
	bpf_mem_alloc_destroy(&ma);
}

/* ---- producer and consumer on two virtual CPUs ---- */

#define PRODUCER_CPU	1
#define CONSUMER_CPU	2
#define XOBJS_MAX	400

struct xfer {
	struct bpf_mem_alloc *ma;
	int n;
	void *obj[XOBJS_MAX];
	int ret;
};

/* x->n objects from the producer's own cache (an empty cache lends from
 * the shared CPU meanwhile: those go back, they are not the producer's) */
static void *produce(void *arg)
{
	struct xfer *x = arg;
	static void *borrowed[4 * XOBJS_MAX];
	int n = 0, nb = 0;

	x->ret = bpfmem_thread_attach(PRODUCER_CPU, 0);
	while (n < x->n && nb < 4 * XOBJS_MAX && !x->ret) {
		void *p = alloc_retry(x->ma, 0);

		if (t_owner(p) == t_cache(x->ma, 0, PRODUCER_CPU))
			x->obj[n++] = p;
		else
			borrowed[nb++] = p;
	}
	while (nb)
		bpf_mem_cache_free(x->ma, borrowed[--nb]);
	if (n < x->n)
		x->ret = -ENOMEM;
	return NULL;
}

static void *consume(void *arg)
{
	struct xfer *x = arg;

	x->ret = bpfmem_thread_attach(CONSUMER_CPU, 0);
	for (int i = 0; i < x->n && !x->ret; i++)
		bpf_mem_cache_free(x->ma, x->obj[i]);
	return NULL;
}

static bool in_xfer(struct xfer *x, void *p)
{
	for (int i = 0; i < x->n; i++)
		if (x->obj[i] == p)
			return true;
	return false;
}

static int xfer_count(struct xfer *x, struct llist_node *p)
{
	int n = 0;

	for (; p; p = p->next)
		n += in_xfer(x, (char *)p + T_HDR);
	return n;
}

/* Objects of the transfer waiting in c's ready chains. */
static int xfer_ready(struct xfer *x, struct bpf_mem_cache *c)
{
	int n = 0;

	for (int i = 0; i < REUSE_SLOTS; i++)
		for (struct llist_node *p = atomic_load(&c->reuse_chain[i]);
		     p && p != REUSE_BUSY; p = p->next)
			n += in_xfer(x, (char *)p + T_HDR);
	return n;
}

struct collect {
	struct xfer *x;
	int back;		/* objects of the transfer handed out again */
	int ret;
};

/* Back on the producer's CPU, with the refill thread stalled: allocate
 * until the cache (list and slots) is empty. */
static void *collect(void *arg)
{
	struct collect *k = arg;
	static void *got[2 * XOBJS_MAX];
	int n = 0;

	k->ret = bpfmem_thread_attach(PRODUCER_CPU, 0);
	t_refill_stall();
	for (void *p; n < 2 * XOBJS_MAX && (p = bpf_mem_cache_alloc(k->x->ma)); n++) {
		got[n] = p;
		k->back += in_xfer(k->x, p);
	}
	t_refill_resume();
	while (n)
		bpf_mem_cache_free(k->x->ma, got[--n]);
	return NULL;
}

static void run_on_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

/* A 64-byte cache whose producer allocated `n` objects, its refills landed. */
static void produce_on_new_cache(struct bpf_mem_alloc *ma, struct xfer *x, int n)
{
	memset(x, 0, sizeof(*x));
	x->ma = ma;
	x->n = n;
	assert_int_equal(bpf_mem_alloc_init(ma, 64, false), 0);
	run_on_thread(produce, x);
	assert_int_equal(x->ret, 0);
	irq_work_flush();
}

static void test_consumer_trims_reach_the_producer_and_are_taken_without_refill(void **state)
{
	static struct bpf_mem_alloc ma;
	static struct xfer x;
	struct collect k = { .x = &x };
	struct bpf_mem_cache *producer, *consumer;
	int waiting;

	/* three trims on the consumer: 4 prefilled + 160 */
	produce_on_new_cache(&ma, &x, 160);
	producer = t_cache(&ma, 0, PRODUCER_CPU);
	consumer = t_cache(&ma, 0, CONSUMER_CPU);
	run_on_thread(consume, &x);
	assert_int_equal(x.ret, 0);
	/* every trim went straight to the producer's slots, none to the
	 * refill thread; the coldest objects trimmed were the consumer's
	 * own prefill (4), the rest the producer's */
	assert_int_equal(atomic_load(&consumer->trims), 3);
	/* the slots may hold batches the producer's refill keeps ready: what
	 * did not find a free one is on the grace-period path */
	irq_work_flush();
	waiting = xfer_ready(&x, producer);
	assert_true(waiting >= 33 - 4);
	assert_int_equal(waiting + xfer_count(&x, producer->free_by_rcu_ttrace.first) +
			 xfer_count(&x, producer->waiting_for_gp_ttrace.first), 3 * 33 - 4);
	/* and the producer takes them with its refill thread stalled */
	run_on_thread(collect, &k);
	assert_int_equal(k.ret, 0);
	assert_int_equal(k.back, waiting);
	bpf_mem_alloc_destroy(&ma);
}

/*
 * Trims past the producer's free slots join its ready chains, each up to
 * the bound (lowered here to two trims), before the consumer parks them or
 * sends them to the grace periods; the producer takes them all back.  The
 * refill thread is stalled throughout: nothing reaches the slots but the
 * trims themselves.
 */
static void test_consumer_trims_join_the_producers_ready_chains_up_to_the_bound(void **state)
{
	static struct bpf_mem_alloc ma;
	static struct xfer x;
	struct collect k = { .x = &x };
	struct bpf_mem_cache *producer, *consumer;
	int bound = 66, refill_slots = 0, in_slots = 0, trimmed = 0, parked;
	size_t park;

	produce_on_new_cache(&ma, &x, XOBJS_MAX);
	producer = t_cache(&ma, 0, PRODUCER_CPU);
	consumer = t_cache(&ma, 0, CONSUMER_CPU);
	park = t_park_trims((size_t)bound * producer->unit_size);
	t_refill_stall();
	run_on_thread(consume, &x);
	assert_int_equal(x.ret, 0);
	for (int i = 0; i < REUSE_SLOTS; i++) {
		struct llist_node *chain = atomic_load(&producer->reuse_chain[i]);
		int mine = xfer_count(&x, chain);

		assert_ptr_not_equal(chain, REUSE_BUSY);
		if (chain && !mine) {
			refill_slots++;	/* a batch the refill kept ready */
			continue;
		}
		/* never past the bound; full, since trims went on past it (the
		 * coldest objects of the first trim are the consumer's prefill) */
		assert_int_equal(atomic_load(&producer->reuse_cnt[i]), bound);
		assert_int_equal(llist_count(chain), bound);
		in_slots += mine;
		trimmed += bound;
	}
	assert_true(refill_slots <= 2);
	assert_int_equal(trimmed, (REUSE_SLOTS - refill_slots) * bound);
	/* then the consumer's park (the same bytes), then the grace periods */
	parked = atomic_load(&consumer->parked_cnt);
	assert_int_equal(parked, bound);
	assert_false(llist_empty(&consumer->trim_llist));
	assert_int_equal(trimmed + parked + (int)llist_count(consumer->trim_llist.first) +
			 atomic_load(&consumer->free_cnt), x.n + 4 /* the consumer's prefill */);
	t_refill_resume();
	/* the producer takes every one of them from its slots (and maybe some
	 * of those past the bounds, back from the grace periods meanwhile) */
	run_on_thread(collect, &k);
	assert_int_equal(k.ret, 0);
	assert_true(k.back >= in_slots);
	t_park_trims(park);
	bpf_mem_alloc_destroy(&ma);
}

/* A tgt that never allocates again: its slots fill up, and every later
 * trim goes through the grace periods to the backend. */
static void test_reuse_slots_hold_a_bounded_number_of_objects(void **state)
{
	static struct bpf_mem_alloc ma;
	static struct xfer x;
	struct bpf_mem_cache *producer, *consumer;
	unsigned long frees0;
	int ready0, to_slots, trims;
	size_t park = t_park_trims(0);	/* trims past the slots: straight to the GPs */

	produce_on_new_cache(&ma, &x, XOBJS_MAX);
	producer = t_cache(&ma, 0, PRODUCER_CPU);
	consumer = t_cache(&ma, 0, CONSUMER_CPU);
	frees0 = atomic_load(&producer->backend_frees);
	ready0 = t_mailbox_cnt(producer);
	run_on_thread(consume, &x);
	assert_int_equal(x.ret, 0);
	assert_true(t_mailbox_cnt(producer) <= (unsigned long)(REUSE_SLOTS * producer->high_watermark));
	to_slots = (t_mailbox_cnt(producer) - ready0) / 33;
	trims = atomic_load(&consumer->trims);
	assert_true(to_slots <= REUSE_SLOTS);
	assert_true(trims > to_slots);
	/* the others went through both grace periods back to the backend
	 * (some of them maybe recycled on the way), none is left waiting */
	bpfmem_rcu_barrier();
	assert_true(atomic_load(&producer->backend_frees) - frees0 > 0);
	assert_true(atomic_load(&producer->backend_frees) - frees0 <=
		    (unsigned long)(trims - to_slots) * 33);
	assert_null(producer->free_by_rcu_ttrace.first);
	assert_null(producer->waiting_for_gp_ttrace.first);
	assert_true(llist_empty(&consumer->trim_llist));
	bpf_mem_alloc_destroy(&ma);
	t_park_trims(park);
}

/*
 * Objects waiting on the tasks-trace lists are the cache's own: when its
 * owner runs low, one refill run hands over a batch and fills every other
 * free slot with a chain of up to `high` of them, all without the backend.
 */
static void test_refill_fills_every_free_slot_from_the_tasks_trace_lists(void **state)
{
	static struct bpf_mem_alloc ma;
	static void *p[500];
	struct t_reader *rcu, *trace;
	struct bpf_mem_cache *c;
	unsigned long allocs0;
	int n;
	size_t park = t_park_trims(0);	/* trims past the slots: straight to the GPs */

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	c = t_cache(&ma, 0, 0);
	rcu = t_reader_enter(false);	/* trimmed objects stay recyclable */
	trace = t_reader_enter(true);
	for (int i = 0; i < 500; i++) {
		/* each refill lands before the list runs dry: every object
		 * comes from c, not borrowed from the shared CPU */
		p[i] = bpf_mem_cache_alloc(&ma);
		assert_ptr_equal(t_owner(p[i]), c);
		irq_work_flush();
	}
	t_owner_takes_ready_chains(c);
	t_slots_block(c);		/* every trim goes to the tasks-trace lists */
	for (int i = 0; i < 500; i++)
		bpf_mem_cache_free(&ma, p[i]);
	irq_work_flush();
	t_slots_release(c);
	assert_int_equal(t_mailbox_cnt(c), 0);
	assert_true(llist_count(c->free_by_rcu_ttrace.first) +
		    llist_count(c->waiting_for_gp_ttrace.first) >=
		    (size_t)(c->batch + (REUSE_SLOTS - 1) * c->high_watermark));
	allocs0 = atomic_load(&c->backend_allocs);
	for (n = 0; t_free_cnt(c) >= c->low_watermark; n++)
		assert_non_null(p[n] = bpf_mem_cache_alloc(&ma));
	irq_work_flush();
	assert_int_equal(t_mailbox_cnt(c), c->batch + (REUSE_SLOTS - 1) * c->high_watermark);
	assert_int_equal(atomic_load(&c->backend_allocs), allocs0);
	while (n)
		bpf_mem_cache_free(&ma, p[--n]);
	t_reader_leave(trace);
	t_reader_leave(rcu);
	bpf_mem_alloc_destroy(&ma);
	t_park_trims(park);
}

/* ---- review findings ---- */

/*
 * A thread that vanished in fork() between marking a cache's refill work
 * pending and queueing it (simulated: the flags set, the work not queued)
 * must not leave the child's cache without refills, nor its destroy
 * waiting forever.
 */
static void test_fork_child_requeues_a_refill_left_pending_by_a_vanished_thread(void **state)
{
	static struct bpf_mem_alloc ma;
	struct bpf_mem_cache *c;
	int status;
	pid_t pid;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	c = t_cache(&ma, 0, 0);
	irq_work_flush();
	t_refill_stall();		/* nothing runs the work while we fake it */
	atomic_fetch_or(&c->refill_work.flags, IRQ_WORK_PENDING | IRQ_WORK_BUSY);
	t_refill_resume();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		static void *p[200];
		int n = 0;

		alarm(20);	/* a hang fails the test with SIGALRM */
		for (int i = 0; i < 200; i++)
			if ((p[n] = bpf_mem_cache_alloc(&ma)))
				n++;
		irq_work_flush();
		/* the re-queued work ran: the cache refilled */
		if (atomic_load(&c->refills) < (unsigned long)2)
			_exit(2);
		while (n)
			bpf_mem_cache_free(&ma, p[--n]);
		bpf_mem_alloc_destroy(&ma);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		fail_msg("child killed by signal %d (SIGALRM: destroy hung)", WTERMSIG(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* the parent's work is still flagged by the fake: clear it */
	atomic_store(&c->refill_work.flags, 0);
	bpf_mem_alloc_destroy(&ma);
}

#define TT_THREADS	2
#define TT_ROUNDS	300

struct ttrace_churn {
	struct bpf_mem_alloc *ma;
	int cpu;
	int ret;
};

/* Trims that find the slots taken go through the tasks-trace stage while
 * its callbacks end stages on the RCU threads. */
static void *ttrace_churn(void *arg)
{
	struct ttrace_churn *t = arg;
	static _Thread_local void *p[200];

	t->ret = bpfmem_thread_attach(t->cpu, 0);
	t_slots_block(t_cache(t->ma, 0, t->cpu));
	for (int r = 0; r < TT_ROUNDS && !t->ret; r++) {
		int n = 0;

		for (int i = 0; i < 200; i++)
			if ((p[n] = bpf_mem_cache_alloc(t->ma)))
				n++;
		while (n)
			bpf_mem_cache_free(t->ma, p[--n]);
	}
	return NULL;
}

/*
 * After bpfmem_rcu_barrier() no trimmed object is left waiting on a
 * tasks-trace list without a grace period of its own (the stage decides
 * whether to go again and ends under the lock its producers take).
 */
static void test_rcu_barrier_leaves_no_trimmed_object_waiting(void **state)
{
	static struct bpf_mem_alloc ma;
	struct ttrace_churn t[TT_THREADS];
	pthread_t th[TT_THREADS];
	long waiting = 0;
	size_t park = t_park_trims(0);	/* trims past the slots: straight to the GPs */

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	t_slots_block(t_cache(&ma, 0, bpfmem_nr_cpus()));
	for (int i = 0; i < TT_THREADS; i++) {
		t[i] = (struct ttrace_churn){ .ma = &ma, .cpu = 10 + i };
		assert_int_equal(pthread_create(&th[i], NULL, ttrace_churn, &t[i]), 0);
	}
	for (int i = 0; i < TT_THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(t[i].ret, 0);
	}
	bpfmem_rcu_barrier();
	for (int cpu = 0; cpu <= bpfmem_nr_cpus(); cpu++) {
		struct bpf_mem_cache *c = t_cache(&ma, 0, cpu);

		waiting += (long)llist_count(c->free_by_rcu_ttrace.first) +
			   (long)llist_count(c->waiting_for_gp_ttrace.first) +
			   (long)llist_count(atomic_load(&c->trim_llist.first));
		t_slots_release(c);
	}
	assert_int_equal(waiting, 0);
	bpf_mem_alloc_destroy(&ma);
	t_park_trims(park);
}

struct percpu_user {
	struct bpf_mem_alloc *ma;
	_Atomic bool stop;
	_Atomic long got;
	int ret;
};

/* Allocates the class being set up, on its own CPU, the whole time. */
static void *percpu_user(void *arg)
{
	struct percpu_user *u = arg;

	u->ret = bpfmem_thread_attach(7, 0);
	while (!atomic_load(&u->stop)) {
		void *p = bpf_mem_alloc(u->ma, 48);

		if (p) {
			atomic_fetch_add(&u->got, 1);
			bpf_mem_free(u->ma, p);
		}
	}
	return NULL;
}

/* bpf_mem_alloc_percpu_unit_init() writes only the shared copy and the
 * caller's own: TSan sees no race with a thread that uses the class (and
 * gets NULL until it exists) on its own CPU meanwhile. */
static void test_percpu_unit_init_while_another_thread_allocates_that_size(void **state)
{
	static struct bpf_mem_alloc ma;
	struct percpu_user u = { .ma = &ma };
	pthread_t th;

	assert_int_equal(bpf_mem_alloc_percpu_init(&ma, NULL), 0);
	assert_int_equal(pthread_create(&th, NULL, percpu_user, &u), 0);
	usleep(1000);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&ma, 48), 0);
	while (!atomic_load(&u.got))
		irq_work_flush();
	atomic_store(&u.stop, true);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(u.ret, 0);
	bpf_mem_alloc_destroy(&ma);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixed_size_bursts_get_no_null_with_the_refill_thread_stalled),
		cmocka_unit_test(test_any_size_bursts_get_no_null_with_the_refill_thread_stalled),
		cmocka_unit_test(test_consumer_trims_reach_the_producer_and_are_taken_without_refill),
		cmocka_unit_test(test_consumer_trims_join_the_producers_ready_chains_up_to_the_bound),
		cmocka_unit_test(test_reuse_slots_hold_a_bounded_number_of_objects),
		cmocka_unit_test(test_refill_fills_every_free_slot_from_the_tasks_trace_lists),
		cmocka_unit_test(test_fork_child_requeues_a_refill_left_pending_by_a_vanished_thread),
		cmocka_unit_test(test_rcu_barrier_leaves_no_trimmed_object_waiting),
		cmocka_unit_test(test_percpu_unit_init_while_another_thread_allocates_that_size),
	};

	return t_run(tests);
}
