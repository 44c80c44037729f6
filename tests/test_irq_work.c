/* SPDX-License-Identifier: MIT */
/*
 * irq_work (lib/kernel/irq_work.h): deduplication while pending, re-run when
 * raised during its run, irq_work_sync and irq_work_flush waiting.  A
 * "blocker" work holds the refill thread so that the queue state is known.
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
	};
	const char *filter = getenv("T_FILTER");

	if (filter)
		cmocka_set_test_filter(filter);
	return t_run_group(tests, setup, NULL);
}
