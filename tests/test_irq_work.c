/* SPDX-License-Identifier: MIT */
/*
 * irq_work (lib/kernel/irq_work.h): deduplication while pending, re-run when
 * raised during its run, irq_work_sync and irq_work_flush waiting, lazy
 * raises and the wake-ups they save.  A "blocker" work holds the refill
 * thread so that the queue state is known.
 */
#include "helpers.h"

#include <signal.h>

static sem_t started, go;
static _Atomic int runs, done;

/* Parks the refill thread until the test posts `go`. */
static void blocker_fn(struct irq_work *w)
{
	sem_post(&started);
	sem_wait(&go);
}

static void count_fn(struct irq_work *w)
{
	atomic_fetch_add(&runs, 1);
}

/* Blocks in its first run only. */
static void block_first_run_fn(struct irq_work *w)
{
	if (atomic_fetch_add(&runs, 1) == 0) {
		sem_post(&started);
		sem_wait(&go);
	}
}

static void slow_fn(struct irq_work *w)
{
	sem_post(&started);
	sem_wait(&go);
	/* work after the release: a sync that does not wait returns in here */
	for (volatile int i = 0; i < 20000; i++)
		;
	atomic_store(&done, 1);
}

static int setup(void **state)
{
	sem_init(&started, 0, 0);
	sem_init(&go, 0, 0);
	return irq_work_start();
}

static void hold_worker(struct irq_work *blocker)
{
	init_irq_work(blocker, blocker_fn);
	assert_true(irq_work_queue(blocker));
	sem_wait(&started);
}

/* Waits until the thread ticks (true) or sleeps until written to (false):
 * it changes state only between works, after a lazy one or after
 * IRQ_WORK_IDLE_TICKS idle ticks. */
static void wait_ticking(bool on)
{
	while (irq_work_seam_ticking() != on)
		usleep(1000);
}

static unsigned long kicks(void)
{
	return atomic_load(&irq_work_seam_kicks);
}

/* The thread sleeps until written to: a lazy raise must wake it. */
static void test_lazy_work_raised_while_the_thread_sleeps_wakes_it(void **state)
{
	static struct irq_work w;
	unsigned long k;

	wait_ticking(false);
	init_irq_work(&w, count_fn);
	atomic_store(&runs, 0);
	k = kicks();
	assert_true(irq_work_queue_lazy(&w));
	irq_work_sync(&w);
	assert_int_equal(atomic_load(&runs), 1);
	assert_int_equal(kicks(), k + 1);
}

/* After lazy work the thread ticks: the next lazy raise only queues, and
 * the tick runs it. */
static void test_lazy_work_raised_while_the_thread_ticks_costs_no_wake_up(void **state)
{
	static struct irq_work w;
	unsigned long k;

	init_irq_work(&w, count_fn);
	atomic_store(&runs, 0);
	assert_true(irq_work_queue_lazy(&w));
	irq_work_sync(&w);
	wait_ticking(true);
	k = kicks();
	assert_true(irq_work_queue_lazy(&w));
	irq_work_sync(&w);
	assert_int_equal(atomic_load(&runs), 2);
	assert_int_equal(kicks(), k);
}

/* An urgent raise of a work that waits lazily for the tick wakes the
 * thread for it (once), and the work still runs once. */
static void test_urgent_raise_of_lazily_pending_work_wakes_the_thread(void **state)
{
	static struct irq_work w, blocker;
	unsigned long k;

	init_irq_work(&w, count_fn);
	atomic_store(&runs, 0);
	assert_true(irq_work_queue_lazy(&w));
	irq_work_sync(&w);
	wait_ticking(true);
	hold_worker(&blocker);
	k = kicks();
	assert_true(irq_work_queue_lazy(&w));
	assert_int_equal(kicks(), k);
	assert_false(irq_work_queue(&w));
	assert_int_equal(kicks(), k + 1);
	assert_false(irq_work_queue(&w));	/* no longer lazy: no second write */
	assert_int_equal(kicks(), k + 1);
	sem_post(&go);
	irq_work_sync(&w);
	assert_int_equal(atomic_load(&runs), 2);
}

/* A lazy raise of a work already pending from an urgent one changes
 * nothing: the thread was woken for it. */
static void test_lazy_raise_of_urgently_pending_work_keeps_it_urgent(void **state)
{
	static struct irq_work w, blocker;

	init_irq_work(&w, count_fn);
	hold_worker(&blocker);
	assert_true(irq_work_queue(&w));
	assert_false(irq_work_queue_lazy(&w));
	assert_int_equal(atomic_load(&w.flags) & IRQ_WORK_LAZY, 0);
	sem_post(&go);
	irq_work_sync(&w);
}

static void test_work_raised_twice_before_it_runs_runs_once(void **state)
{
	static struct irq_work blocker, work;

	atomic_store(&runs, 0);
	init_irq_work(&work, count_fn);
	hold_worker(&blocker);
	assert_true(irq_work_queue(&work));
	assert_false(irq_work_queue(&work));
	assert_true(irq_work_is_busy(&work));
	assert_int_equal(atomic_load(&runs), 0);
	sem_post(&go);
	irq_work_sync(&work);
	assert_int_equal(atomic_load(&runs), 1);
	irq_work_flush();
	assert_int_equal(atomic_load(&runs), 1);
	assert_false(irq_work_is_busy(&work));
}

static void test_work_raised_while_running_runs_again(void **state)
{
	static struct irq_work work;

	atomic_store(&runs, 0);
	init_irq_work(&work, block_first_run_fn);
	assert_true(irq_work_queue(&work));
	sem_wait(&started);	/* first run in progress */
	assert_true(irq_work_queue(&work));
	assert_false(irq_work_queue(&work));
	sem_post(&go);
	irq_work_sync(&work);
	assert_int_equal(atomic_load(&runs), 2);
	assert_false(irq_work_is_busy(&work));
}

static void test_sync_waits_for_the_running_work(void **state)
{
	static struct irq_work work;

	init_irq_work(&work, slow_fn);
	for (int i = 0; i < 50; i++) {
		atomic_store(&done, 0);
		assert_true(irq_work_queue(&work));
		sem_wait(&started);
		sem_post(&go);
		irq_work_sync(&work);
		assert_int_equal(atomic_load(&done), 1);
	}
}

static void test_sync_of_an_idle_work_returns(void **state)
{
	static struct irq_work work;

	init_irq_work(&work, count_fn);
	irq_work_sync(&work);
	assert_false(irq_work_is_busy(&work));
}

static void test_flush_waits_for_every_queued_work(void **state)
{
	enum { NR = 32 };
	static struct irq_work blocker, work[NR];

	for (int i = 0; i < NR; i++)
		init_irq_work(&work[i], count_fn);
	for (int round = 0; round < 20; round++) {
		atomic_store(&runs, 0);
		hold_worker(&blocker);
		for (int i = 0; i < NR; i++)
			assert_true(irq_work_queue(&work[i]));
		sem_post(&go);
		irq_work_flush();
		assert_int_equal(atomic_load(&runs), NR);
	}
}

static struct irq_work handler_work;

static void raise_from_handler(int sig)
{
	irq_work_queue(&handler_work);
}

/* Raising is async-signal-safe: a handler that interrupted the thread queues it. */
static void test_work_raised_from_a_signal_handler_runs(void **state)
{
	struct sigaction sa = { .sa_handler = raise_from_handler }, old;

	atomic_store(&runs, 0);
	init_irq_work(&handler_work, count_fn);
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
	for (int i = 1; i <= 20; i++) {
		assert_int_equal(raise(SIGUSR1), 0);
		irq_work_sync(&handler_work);
		assert_int_equal(atomic_load(&runs), i);
	}
	assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_work_raised_twice_before_it_runs_runs_once),
		cmocka_unit_test(test_work_raised_while_running_runs_again),
		cmocka_unit_test(test_sync_waits_for_the_running_work),
		cmocka_unit_test(test_sync_of_an_idle_work_returns),
		cmocka_unit_test(test_flush_waits_for_every_queued_work),
		cmocka_unit_test(test_work_raised_from_a_signal_handler_runs),
		cmocka_unit_test(test_lazy_work_raised_while_the_thread_sleeps_wakes_it),
		cmocka_unit_test(test_lazy_work_raised_while_the_thread_ticks_costs_no_wake_up),
		cmocka_unit_test(test_urgent_raise_of_lazily_pending_work_wakes_the_thread),
		cmocka_unit_test(test_lazy_raise_of_urgently_pending_work_keeps_it_urgent),
	};
	const char *filter = getenv("T_FILTER");

	if (filter)
		cmocka_set_test_filter(filter);
	return t_run_group(tests, setup, NULL);
}
