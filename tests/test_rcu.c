/* SPDX-License-Identifier: MIT */
/*
 * The RCU runtime: synchronize waits for readers already inside, in both
 * domains and when nested; whether a tasks-trace grace period implies an
 * RCU one follows the configured flavors; call_rcu_hurry() runs its
 * callbacks after a grace period, in order, and its barrier waits for them.
 */
#include "helpers.h"

#include <signal.h>

#include "kernel/rcu.h"

#define ROUNDS 25
#define HOLD_NS 5000000L	/* a reader stays this long inside after synchronize began */

static void lock(bool trace)
{
	if (trace)
		bpfmem_rcu_read_lock_trace();
	else
		bpfmem_rcu_read_lock();
}

static void unlock(bool trace)
{
	if (trace)
		bpfmem_rcu_read_unlock_trace();
	else
		bpfmem_rcu_read_unlock();
}

static void synchronize(bool trace)
{
	if (trace)
		bpfmem_synchronize_rcu_trace();
	else
		bpfmem_synchronize_rcu();
}

/*
 * A reader that stays inside across a synchronize, and proves it: it
 * enters, waits until the synchronizing thread is about to call
 * synchronize, stays HOLD_NS longer (so the call is under way), notes
 * whether synchronize has returned, and only then leaves.  A grace period
 * that does not wait for it returns within the hold: the reader sees
 * `sync_done` while still inside.
 */
struct held {
	bool trace;
	int depth;		/* 2: nested, one level left before the hold */
	sem_t inside;
	_Atomic int sync_started, sync_done;
	_Atomic int held_across;	/* inside when synchronize started */
	_Atomic int done_while_inside;	/* synchronize returned before we left */
	_Atomic int left;
};

static void hold_across_synchronize(struct held *h)
{
	struct timespec hold = { .tv_nsec = HOLD_NS };

	while (!atomic_load(&h->sync_started))
		;
	atomic_store(&h->held_across, 1);
	nanosleep(&hold, NULL);		/* async-signal-safe: also from a handler */
	atomic_store(&h->done_while_inside, atomic_load(&h->sync_done));
	atomic_store(&h->left, 1);
}

static void *held_reader_main(void *arg)
{
	struct held *h = arg;

	for (int i = 0; i < h->depth; i++)
		lock(h->trace);
	for (int i = 1; i < h->depth; i++)
		unlock(h->trace);
	sem_post(&h->inside);
	hold_across_synchronize(h);
	unlock(h->trace);
	return NULL;
}

/* The synchronizer's side, once the reader is inside. */
static void synchronize_under_reader(struct held *h, bool sync_trace)
{
	atomic_store(&h->sync_started, 1);
	synchronize(sync_trace);
	atomic_store(&h->sync_done, 1);
}

static void check_held(struct held *h)
{
	assert_int_equal(atomic_load(&h->held_across), 1);
	assert_int_equal(atomic_load(&h->done_while_inside), 0);
	assert_int_equal(atomic_load(&h->left), 1);
}

/* ROUNDS readers of `reader_trace`'s domain, `depth` deep, each held
 * across a synchronize of `sync_trace`'s domain. */
static void synchronize_waits_for_held_reader(bool reader_trace, int depth, bool sync_trace)
{
	for (int i = 0; i < ROUNDS; i++) {
		static struct held h;
		pthread_t t;

		memset(&h, 0, sizeof(h));
		h.trace = reader_trace;
		h.depth = depth;
		sem_init(&h.inside, 0, 0);
		assert_int_equal(pthread_create(&t, NULL, held_reader_main, &h), 0);
		while (sem_wait(&h.inside))
			;
		synchronize_under_reader(&h, sync_trace);
		assert_int_equal(pthread_join(t, NULL), 0);
		sem_destroy(&h.inside);
		check_held(&h);
	}
}

static void test_synchronize_rcu_waits_for_a_reader_inside(void **state)
{
	synchronize_waits_for_held_reader(false, 1, false);
}

static void test_synchronize_rcu_trace_waits_for_a_trace_reader_inside(void **state)
{
	synchronize_waits_for_held_reader(true, 1, true);
}

static void test_nested_rcu_reader_stays_inside_until_outermost_unlock(void **state)
{
	synchronize_waits_for_held_reader(false, 2, false);
}

static void test_nested_trace_reader_stays_inside_until_outermost_unlock(void **state)
{
	synchronize_waits_for_held_reader(true, 2, true);
}

static void test_synchronize_without_readers_returns(void **state)
{
	bpfmem_synchronize_rcu();
	bpfmem_synchronize_rcu_trace();
	bpfmem_rcu_barrier();
}

static void test_trace_implies_rcu_gp_only_with_the_same_flavor(void **state)
{
	assert_int_equal(rcu_trace_implies_rcu_gp(), BPFMEM_RCU_SAME_FLAVOR);
}

/*
 * One flavor for both domains: a trace reader holds up an RCU grace period.
 * Two flavors: the domains are independent and it does not.
 */
static void test_trace_reader_holds_rcu_gp_only_with_the_same_flavor(void **state)
{
	struct t_reader *r;

	if (BPFMEM_RCU_SAME_FLAVOR) {
		synchronize_waits_for_held_reader(true, 1, false);
		return;
	}
	r = t_reader_enter(true);
	bpfmem_synchronize_rcu();
	assert_int_equal(atomic_load(&r->released), 0);
	t_reader_leave(r);
}

/* A reader inside a signal handler, held across the synchronize of the
 * main thread. */
static struct held sig_held;

static void reader_handler(int sig)
{
	bpfmem_rcu_read_lock();
	sem_post(&sig_held.inside);
	hold_across_synchronize(&sig_held);
	bpfmem_rcu_read_unlock();
}

static void *thread_reading_in_handler(void *arg)
{
	/* process context first: registers the thread with every RCU flavor */
	if (bpfmem_thread_attach(9, 0)) {
		sem_post(&sig_held.inside);	/* check_held() fails: held_across 0 */
		atomic_store(&sig_held.sync_started, 1);
		return NULL;
	}
	raise(SIGUSR1);
	bpfmem_thread_detach();
	return NULL;
}

/* A hurried callback stands for synchronize: it marks `sync_done` when it
 * runs, so running before a reader inside left is caught as above. */
struct hurried {
	struct rcu_head head;
	struct held *h;
};

static void hurried_done(struct rcu_head *head)
{
	atomic_store(&container_of(head, struct hurried, head)->h->sync_done, 1);
}

static void test_call_rcu_hurry_waits_for_a_reader_inside(void **state)
{
	for (int i = 0; i < ROUNDS; i++) {
		static struct held h;
		static struct hurried cb;
		pthread_t t;

		memset(&h, 0, sizeof(h));
		h.depth = 1;
		sem_init(&h.inside, 0, 0);
		cb.h = &h;
		assert_int_equal(pthread_create(&t, NULL, held_reader_main, &h), 0);
		while (sem_wait(&h.inside))
			;
		atomic_store(&h.sync_started, 1);
		call_rcu_hurry(&cb.head, hurried_done);
		rcu_hurry_barrier();
		assert_int_equal(atomic_load(&h.sync_done), 1);
		assert_int_equal(pthread_join(t, NULL), 0);
		sem_destroy(&h.inside);
		check_held(&h);
	}
}

#define HURRIED 300

static struct order {
	struct rcu_head head[HURRIED], requeued;
	_Atomic int ran[HURRIED + 1];	/* index: the position it ran at, + 1 */
	_Atomic int next;
} order;

static void ran_in_order(struct rcu_head *head)
{
	long i = head == &order.requeued ? HURRIED : head - order.head;

	atomic_store(&order.ran[i], atomic_fetch_add(&order.next, 1) + 1);
	if (i == HURRIED - 1)
		call_rcu_hurry(&order.requeued, ran_in_order);
}

/*
 * Callbacks run once each, in the order they were queued, and the barrier
 * returns only after every one queued before it ran (the last one queues
 * another, which the first barrier need not wait for: the second does).
 */
static void test_call_rcu_hurry_runs_callbacks_in_order_and_its_barrier_waits_for_them(void **state)
{
	for (int round = 0; round < 3; round++) {
		memset(&order, 0, sizeof(order));
		for (int i = 0; i < HURRIED; i++) {
			call_rcu_hurry(&order.head[i], ran_in_order);
			if (i % 50 == 49)
				sched_yield();	/* let some start their grace period */
		}
		rcu_hurry_barrier();
		for (int i = 0; i < HURRIED; i++)
			assert_int_equal(atomic_load(&order.ran[i]), i + 1);
		rcu_hurry_barrier();
		assert_int_equal(atomic_load(&order.ran[HURRIED]), HURRIED + 1);
		assert_int_equal(atomic_load(&order.next), HURRIED + 1);
	}
}

static void test_synchronize_rcu_waits_for_a_reader_in_a_signal_handler(void **state)
{
	struct sigaction sa = { .sa_handler = reader_handler }, old;

	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
	for (int i = 0; i < ROUNDS; i++) {
		pthread_t t;

		memset(&sig_held, 0, sizeof(sig_held));
		sem_init(&sig_held.inside, 0, 0);
		assert_int_equal(pthread_create(&t, NULL, thread_reading_in_handler, NULL), 0);
		while (sem_wait(&sig_held.inside))
			;
		synchronize_under_reader(&sig_held, false);
		assert_int_equal(pthread_join(t, NULL), 0);
		sem_destroy(&sig_held.inside);
		check_held(&sig_held);
	}
	assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_synchronize_rcu_waits_for_a_reader_inside),
		cmocka_unit_test(test_synchronize_rcu_trace_waits_for_a_trace_reader_inside),
		cmocka_unit_test(test_nested_rcu_reader_stays_inside_until_outermost_unlock),
		cmocka_unit_test(test_nested_trace_reader_stays_inside_until_outermost_unlock),
		cmocka_unit_test(test_synchronize_rcu_waits_for_a_reader_in_a_signal_handler),
		cmocka_unit_test(test_synchronize_without_readers_returns),
		cmocka_unit_test(test_trace_implies_rcu_gp_only_with_the_same_flavor),
		cmocka_unit_test(test_trace_reader_holds_rcu_gp_only_with_the_same_flavor),
		cmocka_unit_test(test_call_rcu_hurry_waits_for_a_reader_inside),
		cmocka_unit_test(test_call_rcu_hurry_runs_callbacks_in_order_and_its_barrier_waits_for_them),
	};

	return t_run(tests);
}
