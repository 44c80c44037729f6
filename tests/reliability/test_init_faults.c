// SPDX-License-Identifier: MIT
/*
 * eventfd and thread-creation failures at init and in a fork child, made on
 * demand by link-time wrappers (-Wl,--wrap=eventfd,--wrap=pthread_create):
 * init returns the negative errno, nothing is left half set up, and the
 * next init after the fault starts the refill thread.  Every scenario runs
 * in a freshly exec'ed copy of this program, because only the first init of
 * a process starts the thread (a fork child would inherit the eventfd).
 */
#include "rel_common.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <setjmp.h>
#include <cmocka.h>

static atomic_int fail_eventfd, fail_pthread_create;
static atomic_int eventfd_calls, pthread_create_calls;

int __real_eventfd(unsigned int initval, int flags);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);

int __wrap_eventfd(unsigned int initval, int flags)
{
	atomic_fetch_add(&eventfd_calls, 1);
	if (atomic_load(&fail_eventfd)) {
		errno = EMFILE;
		return -1;
	}
	return __real_eventfd(initval, flags);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	atomic_fetch_add(&pthread_create_calls, 1);
	if (atomic_load(&fail_pthread_create))
		return EAGAIN;
	return __real_pthread_create(t, attr, fn, arg);
}

#define NR_RESULTS 8
#define RESULT_FD 3

/* argv[0], not /proc/self/exe: under valgrind that is valgrind's own tool */
static const char *self_path;

static void (*scenario_fn(const char *name))(long *res);

/* Run scenario `name` in a fresh process; it fills NR_RESULTS values for
 * the parent to assert on.  A crash or a hang (alarm) fails the test. */
static void in_child(const char *name, long *res)
{
	int fds[2];
	pid_t pid;
	int status;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		if (dup2(fds[1], RESULT_FD) < 0)
			_exit(3);
		execl(self_path, self_path, "--scenario", name, (char *)NULL);
		_exit(4);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], res, sizeof(long) * NR_RESULTS), (ssize_t)sizeof(long) * NR_RESULTS);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static int run_scenario(const char *name)
{
	long out[NR_RESULTS] = { 0 };
	void (*fn)(long *res) = scenario_fn(name);

	if (!fn)
		return 5;
	alarm(20);
	fn(out);
	return write(RESULT_FD, out, sizeof(out)) == (ssize_t)sizeof(out) ? 0 : 2;
}

/* Allocate, stamp, free and destroy: 1 when every step worked. */
static long allocator_works(struct bpf_mem_alloc *ma)
{
	void *p = bpf_mem_alloc(ma, 100);
	long ok;

	if (!p)
		return 0;
	rel_stamp(p, 100, 7);
	ok = rel_check(p, 100, 7) == 0;
	bpf_mem_free(ma, p);
	bpfmem_rcu_barrier();
	return ok;
}

static void eventfd_failure(long *res)
{
	struct bpf_mem_alloc ma = { 0 }, ma2 = { 0 };

	atomic_store(&fail_eventfd, 1);
	res[0] = bpf_mem_alloc_init(&ma, 0, false);
	res[1] = bpf_mem_alloc_init(&ma2, 64, true);
	res[2] = bpf_mem_alloc_percpu_init(&ma2, NULL);
	res[3] = bpf_mem_alloc(&ma, 100) == NULL;
	res[4] = rel_backend_outstanding();
	atomic_store(&fail_eventfd, 0);
	res[5] = bpf_mem_alloc_init(&ma, 0, false);
	res[6] = allocator_works(&ma);
	bpf_mem_alloc_destroy(&ma);
	res[7] = rel_backend_outstanding();
}

static void test_init_returns_emfile_when_eventfd_fails_and_works_after(void **state)
{
	long res[NR_RESULTS];

	(void)state;
	in_child("eventfd", res);
	rel_report("init_fault_eventfd", "injected=eventfd-EMFILE-at-first-init inits_failed=%d "
		   "results_with_fault=%ld,%ld,%ld result_after=%ld",
		   (res[0] < 0) + (res[1] < 0) + (res[2] < 0), res[0], res[1], res[2], res[5]);
	assert_int_equal(res[0], -EMFILE);
	assert_int_equal(res[1], -EMFILE);
	assert_int_equal(res[2], -EMFILE);
	assert_int_equal(res[3], 1);	/* a failed init leaves ma unusable, not garbage */
	assert_int_equal(res[4], 0);	/* and took nothing from the backend */
	assert_int_equal(res[5], 0);
	assert_int_equal(res[6], 1);
	assert_int_equal(res[7], 0);
}

static void thread_failure(long *res)
{
	struct bpf_mem_alloc ma = { 0 };

	atomic_store(&fail_pthread_create, 1);
	res[0] = bpf_mem_alloc_init(&ma, 0, false);
	res[1] = bpf_mem_alloc_init(&ma, 128, false);
	res[2] = atomic_load(&pthread_create_calls);
	res[3] = rel_backend_outstanding();
	atomic_store(&fail_pthread_create, 0);
	res[4] = bpf_mem_alloc_init(&ma, 0, false);
	res[5] = allocator_works(&ma);
	bpf_mem_alloc_destroy(&ma);
	res[6] = rel_backend_outstanding();
	res[7] = atomic_load(&eventfd_calls);
}

static void test_init_returns_eagain_when_thread_creation_fails_and_works_after(void **state)
{
	long res[NR_RESULTS];

	(void)state;
	in_child("thread", res);
	rel_report("init_fault_thread", "injected=pthread_create-EAGAIN-at-first-init "
		   "inits_failed=%d results_with_fault=%ld,%ld result_after=%ld",
		   (res[0] < 0) + (res[1] < 0), res[0], res[1], res[4]);
	assert_int_equal(res[0], -EAGAIN);
	assert_int_equal(res[1], -EAGAIN);
	assert_int_equal(res[2], 2);	/* every init retried the refill thread */
	assert_int_equal(res[3], 0);
	assert_int_equal(res[4], 0);
	assert_int_equal(res[5], 1);
	assert_int_equal(res[6], 0);
	assert_int_equal(res[7], 1);	/* the eventfd of the failed start was kept */
}

/*
 * A fork child that cannot restart the refill thread reports it through the
 * warning hook, keeps using the inherited allocator, and gets its refill
 * thread back at its next init.
 */
static struct bpf_mem_alloc inherited;

static void fork_restart_failure(long *res)
{
	struct bpf_mem_alloc ma = { 0 };
	pid_t pid;
	int fds[2], status;

	if (pipe(fds))
		return;
	atomic_store(&fail_pthread_create, 1);
	pid = fork();
	if (pid == 0) {
		long out[3];

		/* the parent had no warning: this one came from the atfork handler */
		out[0] = atomic_load(&rel_warnings) == 1 &&
			 strstr(rel_last_warning, "refill thread") != NULL;
		atomic_store(&fail_pthread_create, 0);
		out[1] = bpf_mem_alloc_init(&ma, 0, false);
		out[2] = allocator_works(&inherited) && allocator_works(&ma);
		bpf_mem_alloc_destroy(&ma);
		bpf_mem_alloc_destroy(&inherited);
		_exit(write(fds[1], out, sizeof(out)) == (ssize_t)sizeof(out) ? 0 : 2);
	}
	atomic_store(&fail_pthread_create, 0);
	res[0] = pid > 0;
	res[1] = read(fds[0], &res[2], 3 * sizeof(long)) == 3 * sizeof(long);
	res[5] = waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	bpf_mem_alloc_destroy(&inherited);
	res[6] = rel_backend_outstanding();
}

static void warned_in_child(long *res)
{
	/* the warning is issued in the child's atfork handler, before the child's
	 * code runs: count it from a handler installed before fork */
	rel_count_warnings();
	if (bpf_mem_alloc_init(&inherited, 0, false)) {
		res[7] = -1;
		return;
	}
	fork_restart_failure(res);
}

static void test_fork_child_reports_refill_thread_failure_and_recovers(void **state)
{
	long res[NR_RESULTS];

	(void)state;
	in_child("fork", res);
	rel_report("init_fault_fork_child", "injected=pthread_create-EAGAIN-in-fork-child "
		   "warnings=%ld child_init_after=%ld", res[2], res[3]);
	assert_int_equal(res[7], 0);
	assert_int_equal(res[0], 1);
	assert_int_equal(res[1], 1);
	assert_int_equal(res[2], 1);	/* one warning, about the refill thread */
	assert_int_equal(res[3], 0);
	assert_int_equal(res[4], 1);
	assert_int_equal(res[5], 0);
	assert_int_equal(res[6], 0);
}

static void (*scenario_fn(const char *name))(long *res)
{
	if (!strcmp(name, "eventfd"))
		return eventfd_failure;
	if (!strcmp(name, "thread"))
		return thread_failure;
	if (!strcmp(name, "fork"))
		return warned_in_child;
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--scenario"))
		return run_scenario(argv[2]);
	self_path = argv[0];

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_returns_emfile_when_eventfd_fails_and_works_after),
		cmocka_unit_test(test_init_returns_eagain_when_thread_creation_fails_and_works_after),
		cmocka_unit_test(test_fork_child_reports_refill_thread_failure_and_recovers),
	};

	/* a hang fails with a message instead of running into the ctest timeout */
	rel_watchdog(100, "test_init_faults: still running after 100 s");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
