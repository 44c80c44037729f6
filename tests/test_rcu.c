/* SPDX-License-Identifier: MIT */
/*
 * The RCU runtime: synchronize waits for readers already inside, in both
 * domains and when nested; whether a tasks-trace grace period implies an
 * RCU one follows the configured flavors.
 */
#include "helpers.h"

#include <signal.h>

#include "kernel/rcu.h"

#define ROUNDS 25

struct nested_reader {
	pthread_t thread;
	bool trace;
	sem_t inside, release;
	_Atomic int released;
};

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

/* Two levels deep, then one level left: still inside the outer section. */
static void *nested_reader_main(void *arg)
{
	struct nested_reader *r = arg;

	lock(r->trace);
	lock(r->trace);
	unlock(r->trace);
	sem_post(&r->inside);
	sem_wait(&r->release);
	atomic_store(&r->released, 1);
	unlock(r->trace);
	return NULL;
}

static void synchronize(bool trace)
{
	if (trace)
		bpfmem_synchronize_rcu_trace();
	else
		bpfmem_synchronize_rcu();
}

/*
 * The reader sets `released` just before it leaves; it is let go right
 * before synchronize starts, so a synchronize that did not wait for it
 * would usually return while `released` is still 0.
 */
static void synchronize_waits_for_reader(bool trace)
{
	for (int i = 0; i < ROUNDS; i++) {
		struct t_reader r;

		t_reader_enter(&r, trace);
		sem_post(&r.release);
		synchronize(trace);
		assert_int_equal(atomic_load(&r.released), 1);
		assert_int_equal(pthread_join(r.thread, NULL), 0);
		sem_destroy(&r.inside);
		sem_destroy(&r.release);
	}
}

static void test_synchronize_rcu_waits_for_a_reader_inside(void **state)
{
	synchronize_waits_for_reader(false);
}

static void test_synchronize_rcu_trace_waits_for_a_trace_reader_inside(void **state)
{
	synchronize_waits_for_reader(true);
}

static void nested_reader_stays_inside(bool trace)
{
	for (int i = 0; i < ROUNDS; i++) {
		struct nested_reader r = { .trace = trace };

		sem_init(&r.inside, 0, 0);
		sem_init(&r.release, 0, 0);
		assert_int_equal(pthread_create(&r.thread, NULL, nested_reader_main, &r), 0);
		sem_wait(&r.inside);
		sem_post(&r.release);
		synchronize(trace);
		assert_int_equal(atomic_load(&r.released), 1);
		assert_int_equal(pthread_join(r.thread, NULL), 0);
		sem_destroy(&r.inside);
		sem_destroy(&r.release);
	}
}

static void test_nested_rcu_reader_stays_inside_until_outermost_unlock(void **state)
{
	nested_reader_stays_inside(false);
}

static void test_nested_trace_reader_stays_inside_until_outermost_unlock(void **state)
{
	nested_reader_stays_inside(true);
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
	struct t_reader r;

	t_reader_enter(&r, true);
	if (BPFMEM_RCU_SAME_FLAVOR) {
		sem_post(&r.release);
		bpfmem_synchronize_rcu();
		assert_int_equal(atomic_load(&r.released), 1);
		assert_int_equal(pthread_join(r.thread, NULL), 0);
		sem_destroy(&r.inside);
		sem_destroy(&r.release);
	} else {
		bpfmem_synchronize_rcu();
		assert_int_equal(atomic_load(&r.released), 0);
		t_reader_leave(&r);
	}
}

/* A reader inside a signal handler; sem_post is async-signal-safe, sem_wait
 * is not, so the handler spins on `go`. */
static struct {
	sem_t inside;
	_Atomic int go, released;
} sig_reader;

static void reader_handler(int sig)
{
	bpfmem_rcu_read_lock();
	sem_post(&sig_reader.inside);
	while (!atomic_load(&sig_reader.go))
		;
	atomic_store(&sig_reader.released, 1);
	bpfmem_rcu_read_unlock();
}

static void *thread_reading_in_handler(void *arg)
{
	/* process context first: registers the thread with every RCU flavor */
	if (bpfmem_thread_attach(9, 0))
		return NULL;
	raise(SIGUSR1);
	bpfmem_thread_detach();
	return NULL;
}

static void test_synchronize_rcu_waits_for_a_reader_in_a_signal_handler(void **state)
{
	struct sigaction sa = { .sa_handler = reader_handler }, old;

	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
	for (int i = 0; i < ROUNDS; i++) {
		pthread_t t;

		sem_init(&sig_reader.inside, 0, 0);
		atomic_store(&sig_reader.go, 0);
		atomic_store(&sig_reader.released, 0);
		assert_int_equal(pthread_create(&t, NULL, thread_reading_in_handler, NULL), 0);
		sem_wait(&sig_reader.inside);
		atomic_store(&sig_reader.go, 1);
		bpfmem_synchronize_rcu();
		assert_int_equal(atomic_load(&sig_reader.released), 1);
		assert_int_equal(pthread_join(t, NULL), 0);
		sem_destroy(&sig_reader.inside);
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
	};

	return t_run(tests);
}
