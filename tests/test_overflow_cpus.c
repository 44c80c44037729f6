/* SPDX-License-Identifier: MIT */
/*
 * More live threads than virtual CPUs (BPFMEM_NR_CPUS=2): the overflow
 * threads allocate and free through the shared path, nothing is handed out
 * twice or lost; and how BPFMEM_NR_CPUS itself is parsed at load time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <bpfmem.h>
#include "kernel/cpu.h"
#include "kernel/slab.h"
#include "helpers.h"

extern char **environ;

#define NR_CPUS_UNDER_TEST "2"
#define THREADS 8
#define ITERS 10000
#define BATCH 16
/* an allocation may return NULL while a refill is in flight; this many
 * retries in a row means the thread is starved */
#define MAX_RETRIES 1000000

/* ---- objects stamped with their holder ---- */

/*
 * Word 0 of every object we hold is LIVE_TAG | holder << 40 | seq; before
 * we free it we overwrite it with FREED_TAG.  Whoever gets an object swaps
 * its own tag in: seeing another LIVE tag means it was handed out twice.
 */
#define TAG_MASK	0xffff000000000000ull
#define LIVE_TAG	0xb1eb000000000000ull
#define FREED_TAG	0x0f4eed0000000000ull

static _Atomic long double_handouts, corrupted;

static uint64_t stamp(void *obj, size_t size, unsigned int holder, uint64_t seq)
{
	uint64_t tag = LIVE_TAG | (uint64_t)holder << 40 | (seq & 0xffffffffffull);
	uint64_t old = atomic_exchange((_Atomic uint64_t *)obj, tag);

	if ((old & TAG_MASK) == LIVE_TAG)
		atomic_fetch_add(&double_handouts, 1);
	/* the last word too: catches an overlap with a neighbour */
	*(uint64_t *)((char *)obj + size - 8) = tag;
	return tag;
}

static void check_and_unstamp(void *obj, size_t size, uint64_t tag)
{
	if (atomic_load((_Atomic uint64_t *)obj) != tag ||
	    *(uint64_t *)((char *)obj + size - 8) != tag)
		atomic_fetch_add(&corrupted, 1);
	/* no LIVE tag may outlive the object: the backend may hand its memory
	 * out again at another offset */
	*(uint64_t *)((char *)obj + size - 8) = 0;
	atomic_store((_Atomic uint64_t *)obj, FREED_TAG);
}

/* For objects whose tag the checker does not know: any LIVE tag will do. */
static void check_live_and_unstamp(void *obj, size_t size)
{
	uint64_t tag = atomic_load((_Atomic uint64_t *)obj);

	if ((tag & TAG_MASK) != LIVE_TAG)
		atomic_fetch_add(&corrupted, 1);
	check_and_unstamp(obj, size, tag);
}

/* ---- common ---- */


static int setup(void **state)
{
	(void)state;
	atomic_store(&t_warnings, 0);
	atomic_store(&double_handouts, 0);
	atomic_store(&corrupted, 0);
	bpfmem_set_warn_handler(t_count_warning, NULL);
	/* the main thread stays off the two virtual CPUs */
	bpfmem_thread_detach();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	bpfmem_set_warn_handler(NULL, NULL);
	return 0;
}

static long slab_outstanding(void)
{
	struct slab_stats st;

	slab_get_stats(&st);
	return st.allocs - st.frees;
}

static void test_nr_cpus_comes_from_environment(void **state)
{
	(void)state;
	assert_int_equal(bpfmem_nr_cpus(), atoi(NR_CPUS_UNDER_TEST));
}

/* ---- many threads, two virtual CPUs ---- */

/* request sizes that land in 16..4096 byte classes with the header */
static const size_t sizes[] = { 8, 24, 56, 88, 120, 184, 248, 504, 1016, 2040, 4088 };

struct worker {
	struct bpf_mem_alloc *ma;
	pthread_barrier_t *all_started;
	unsigned int id;
	int cpu;		/* after the first allocation */
	long nulls;		/* allocations that returned NULL and were retried */
	bool starved;
};

static void *alloc_retry(struct worker *w, size_t size)
{
	void *obj;
	long tries = 0;

	while (!(obj = bpf_mem_alloc(w->ma, size))) {
		w->nulls++;
		if (++tries == MAX_RETRIES) {
			w->starved = true;
			return NULL;
		}
		sched_yield();
	}
	return obj;
}

static void *churn(void *arg)
{
	struct worker *w = arg;
	void *obj[BATCH];
	uint64_t tag[BATCH];
	size_t size[BATCH];
	uint64_t seq = 0;

	bpf_mem_free(w->ma, alloc_retry(w, 8));
	w->cpu = bpfmem_current_cpu();
	/* every thread holds (or failed to get) a CPU before anyone churns */
	pthread_barrier_wait(w->all_started);
	for (int it = 0; it < ITERS && !w->starved; it++) {
		int n = 0;

		for (; n < BATCH; n++) {
			size[n] = sizes[(it + n + w->id) % (sizeof(sizes) / sizeof(sizes[0]))];
			obj[n] = alloc_retry(w, size[n]);
			if (!obj[n])
				break;
			tag[n] = stamp(obj[n], size[n], w->id, seq++);
		}
		sched_yield();	/* let the others run while we hold the batch */
		for (int i = 0; i < n; i++) {
			check_and_unstamp(obj[i], size[i], tag[i]);
			bpf_mem_free(w->ma, obj[i]);
		}
	}
	return NULL;
}

/*
 * Threads without a CPU of their own reach their state's slot of the guard
 * copy through the fast path (kernel/cpu.h): each state's own slot, and
 * nothing there but `active` is ever written, which is back at 0.
 */
static void assert_guard_copy_untouched(const struct bpf_mem_alloc *ma)
{
	static const int states[] = { CPU_STATE_NONE, CPU_STATE_SHARED, CPU_STATE_EXITING };

	for (unsigned int s = 0; s < sizeof(states) / sizeof(states[0]); s++) {
		assert_int_equal(cpu_of_off(cpu_off_of(states[s])), states[s]);
		assert_true(cpu_off_of(states[s]) < 0);
		for (int i = 0; i < NUM_CACHES; i++) {
			const struct bpfmem_fast_cache *g =
				_bpfmem_fast_cache(ma->caches, CACHE_OFF(i), cpu_off_of(states[s]));

			assert_null(g->first);
			assert_int_equal(g->cnt, 0);
			assert_int_equal(g->alloc_floor, 0);
			assert_int_equal(g->free_ceil, 0);
			assert_int_equal(g->active, 0);
			assert_null(g->tgt);
		}
	}
	for (int cpu = 0; cpu < bpfmem_nr_cpus(); cpu++)
		assert_int_equal(cpu_of_off(cpu_off_of(cpu)), cpu);
}

static void test_more_threads_than_cpus_all_allocate_through_shared_path(void **state)
{
	static struct bpf_mem_alloc ma;
	struct worker w[THREADS];
	pthread_barrier_t all_started;
	pthread_t t[THREADS];
	long outstanding = slab_outstanding();
	int owners = 0, overflow = 0;
	long nulls = 0;

	(void)state;
	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	pthread_barrier_init(&all_started, NULL, THREADS);
	for (unsigned int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .ma = &ma, .all_started = &all_started, .id = i };
		assert_int_equal(pthread_create(&t[i], NULL, churn, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	pthread_barrier_destroy(&all_started);

	for (int i = 0; i < THREADS; i++) {
		assert_false(w[i].starved);
		if (w[i].cpu >= 0)
			owners++;
		else
			overflow++;
		nulls += w[i].nulls;
	}
	print_message("%ld allocations returned NULL and were retried\n", nulls);
	assert_int_equal(owners, 2);
	assert_int_equal(overflow, THREADS - 2);
	assert_int_equal(atomic_load(&double_handouts), 0);
	assert_int_equal(atomic_load(&corrupted), 0);
	assert_guard_copy_untouched(&ma);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(slab_outstanding(), outstanding);
	assert_int_equal(atomic_load(&t_warnings), 0);
}

/*
 * Two overflow threads that each hold at most one object never empty the
 * shared cache (it is prefilled), so neither may ever get NULL: contention
 * on the shared CPU must cost time, not allocations.
 */
#define CONTENDED_ITERS 200000

struct contender {
	struct bpf_mem_alloc *ma;
	pthread_barrier_t *go, *done;
	int cpu;
	long nulls;
};

/* Owns one of the two virtual CPUs until the contenders are done. */
static void *hold_cpu(void *arg)
{
	struct contender *c = arg;

	c->nulls = bpfmem_thread_attach(c->cpu, 0);
	pthread_barrier_wait(c->go);
	pthread_barrier_wait(c->done);
	return NULL;
}

static void *contend(void *arg)
{
	struct contender *c = arg;

	pthread_barrier_wait(c->go);
	for (int i = 0; i < CONTENDED_ITERS; i++) {
		void *obj = bpf_mem_alloc(c->ma, 8);

		if (!obj)
			c->nulls++;
		bpf_mem_free(c->ma, obj);
	}
	c->cpu = bpfmem_current_cpu();
	pthread_barrier_wait(c->done);
	return NULL;
}

static void test_overflow_threads_never_get_null_while_shared_cache_has_objects(void **state)
{
	static struct bpf_mem_alloc ma;
	pthread_barrier_t go, done;
	struct contender c[4];
	pthread_t t[4];
	long outstanding = slab_outstanding();

	(void)state;
	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	pthread_barrier_init(&go, NULL, 4);
	pthread_barrier_init(&done, NULL, 4);
	for (int i = 0; i < 4; i++) {
		c[i] = (struct contender){ .ma = &ma, .go = &go, .done = &done, .cpu = i };
		assert_int_equal(pthread_create(&t[i], NULL, i < 2 ? hold_cpu : contend, &c[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	pthread_barrier_destroy(&go);
	pthread_barrier_destroy(&done);

	assert_int_equal(c[0].nulls, 0);	/* both CPUs were attached */
	assert_int_equal(c[1].nulls, 0);
	assert_int_equal(c[2].cpu, -1);		/* and the others overflowed */
	assert_int_equal(c[3].cpu, -1);
	/* the wait for the other thread is bounded (a holder may be stuck in
	 * a handler), so a descheduled holder can cost an allocation now and
	 * then; a try-lock would cost every other one */
	print_message("%ld of %d contended allocations returned NULL\n",
		      c[2].nulls + c[3].nulls, 2 * CONTENDED_ITERS);
	assert_true(c[2].nulls + c[3].nulls <= 2 * CONTENDED_ITERS / 1000);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(slab_outstanding(), outstanding);
	assert_int_equal(atomic_load(&t_warnings), 0);
}

/* ---- signal handlers on overflow threads ---- */

/*
 * The shared CPU is serialised by a lock between threads; a handler that
 * interrupts its own thread inside that lock must see re-entry (alloc NULL,
 * free parked) rather than wait for itself.  Overflow threads churn with a
 * 20 kHz timer on each; their handlers allocate, free and take objects the
 * interrupted loop hands over.
 */
#define STORM_SIG	SIGRTMIN
#define STORM_NS	50000
/* ThreadSanitizer slows every call and every signal delivery by far more */
#if defined(__SANITIZE_THREAD__)
#define STORM_ITERS	50000
#else
#define STORM_ITERS	1000000
#endif
#define STORM_THREADS	4	/* two own the CPUs, two overflow */
#define HANDOVER_SIZE	56

static struct bpf_mem_alloc storm_ma;
static __thread _Atomic(void *) handover;
static __thread volatile sig_atomic_t in_lib;
static __thread unsigned int handler_seq;
static _Atomic long handler_runs, handler_reentered, handed_over;

static void storm_handler(int sig)
{
	int saved = errno;
	unsigned int i = handler_seq++;
	size_t size = sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];
	void *obj;

	(void)sig;
	atomic_fetch_add(&handler_runs, 1);
	if (in_lib)
		atomic_fetch_add(&handler_reentered, 1);
	obj = bpf_mem_alloc(&storm_ma, size);
	if (obj) {
		stamp(obj, size, 0xff, i);
		check_live_and_unstamp(obj, size);
		bpf_mem_free(&storm_ma, obj);
	}
	obj = atomic_exchange(&handover, NULL);
	if (obj) {
		check_live_and_unstamp(obj, HANDOVER_SIZE);
		if (i & 1)
			bpf_mem_free_rcu(&storm_ma, obj);
		else
			bpf_mem_free(&storm_ma, obj);
		atomic_fetch_add(&handed_over, 1);
	}
	errno = saved;
}

struct stormer {
	pthread_barrier_t *go, *done;
	int cpu;		/* owners: the CPU to attach; others: where they ended up */
	int ret;
};

static void *own_cpu_until_done(void *arg)
{
	struct stormer *st = arg;

	st->ret = bpfmem_thread_attach(st->cpu, 0);
	pthread_barrier_wait(st->go);
	pthread_barrier_wait(st->done);
	return NULL;
}

#define FLAGGED(stmt) do {					\
		in_lib = 1;					\
		atomic_signal_fence(memory_order_seq_cst);	\
		stmt;						\
		atomic_signal_fence(memory_order_seq_cst);	\
		in_lib = 0;					\
	} while (0)

static void *churn_under_storm(void *arg)
{
	struct stormer *st = arg;
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = STORM_SIG };
	struct itimerspec its = {
		.it_interval = { .tv_nsec = STORM_NS },
		.it_value = { .tv_nsec = STORM_NS },
	};
	sigset_t set;
	timer_t timer;
	void *obj, *old;

	pthread_barrier_wait(st->go);
	sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
	st->ret = timer_create(CLOCK_MONOTONIC, &sev, &timer) ||
		  timer_settime(timer, 0, &its, NULL);
	for (unsigned int i = 0; i < STORM_ITERS && !st->ret; i++) {
		FLAGGED(obj = bpf_mem_alloc(&storm_ma, HANDOVER_SIZE));
		if (obj) {
			stamp(obj, HANDOVER_SIZE, (unsigned int)st->cpu, i);
			old = atomic_exchange(&handover, obj);
			if (old) {
				check_live_and_unstamp(old, HANDOVER_SIZE);
				FLAGGED(bpf_mem_free(&storm_ma, old));
			}
		}
	}
	st->cpu = bpfmem_current_cpu();
	/* no handler may run once the hand-over slot is emptied */
	sigemptyset(&set);
	sigaddset(&set, STORM_SIG);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (!st->ret)
		timer_delete(timer);
	obj = atomic_exchange(&handover, NULL);
	if (obj) {
		check_live_and_unstamp(obj, HANDOVER_SIZE);
		bpf_mem_free(&storm_ma, obj);
	}
	pthread_barrier_wait(st->done);
	return NULL;
}

static void test_handlers_on_overflow_threads_reenter_shared_path_safely(void **state)
{
	struct sigaction sa = { .sa_handler = storm_handler };
	struct stormer st[STORM_THREADS];
	pthread_barrier_t go, done;
	pthread_t t[STORM_THREADS];
	long outstanding = slab_outstanding();

	(void)state;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(STORM_SIG, &sa, NULL), 0);
	atomic_store(&handler_runs, 0);
	atomic_store(&handler_reentered, 0);
	atomic_store(&handed_over, 0);
	assert_int_equal(bpf_mem_alloc_init(&storm_ma, 0, false), 0);
	pthread_barrier_init(&go, NULL, STORM_THREADS);
	pthread_barrier_init(&done, NULL, STORM_THREADS);
	for (int i = 0; i < STORM_THREADS; i++) {
		st[i] = (struct stormer){ .go = &go, .done = &done, .cpu = i };
		assert_int_equal(pthread_create(&t[i], NULL,
						i < 2 ? own_cpu_until_done : churn_under_storm,
						&st[i]), 0);
	}
	for (int i = 0; i < STORM_THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	pthread_barrier_destroy(&go);
	pthread_barrier_destroy(&done);
	bpf_mem_alloc_destroy(&storm_ma);

	print_message("%ld handler runs, %ld inside the library, %ld handed over\n",
		      atomic_load(&handler_runs), atomic_load(&handler_reentered),
		      atomic_load(&handed_over));
	for (int i = 0; i < STORM_THREADS; i++)
		assert_int_equal(st[i].ret, 0);
	assert_int_equal(st[2].cpu, -1);	/* both churners overflowed */
	assert_int_equal(st[3].cpu, -1);
	assert_true(atomic_load(&handler_reentered) > 0);
	assert_true(atomic_load(&handed_over) > 0);
	assert_int_equal(atomic_load(&double_handouts), 0);
	assert_int_equal(atomic_load(&corrupted), 0);
	assert_int_equal(slab_outstanding(), outstanding);
	assert_int_equal(atomic_load(&t_warnings), 0);
}

/* ---- BPFMEM_NR_CPUS parsing, in a fresh process each ---- */

struct child_out {
	char out[256];
	char err[1024];
	int status;
};

static void read_all(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	ssize_t r;

	while (n < cap - 1 && (r = read(fd, buf + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
}

/* Runs this binary with `--print-nr-cpus` and BPFMEM_NR_CPUS=value. */
static void run_child(const char *value, struct child_out *co)
{
	char var[128], *envp[256], *argv[] = { "test_overflow_cpus", "--print-nr-cpus", NULL };
	posix_spawn_file_actions_t fa;
	int out[2], err[2], n = 0;
	pid_t pid;

	snprintf(var, sizeof(var), "BPFMEM_NR_CPUS=%s", value);
	for (char **e = environ; *e && n < 254; e++)
		if (strncmp(*e, "BPFMEM_NR_CPUS=", 15))
			envp[n++] = *e;
	envp[n++] = var;
	envp[n] = NULL;

	assert_int_equal(pipe(out), 0);
	assert_int_equal(pipe(err), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
	posix_spawn_file_actions_addclose(&fa, out[0]);
	posix_spawn_file_actions_addclose(&fa, err[0]);
	assert_int_equal(posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, envp), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(out[1]);
	close(err[1]);
	read_all(out[0], co->out, sizeof(co->out));
	read_all(err[0], co->err, sizeof(co->err));
	close(out[0]);
	close(err[0]);
	assert_int_equal(waitpid(pid, &co->status, 0), pid);
}

static int default_nr_cpus(void)
{
	long conf = sysconf(_SC_NPROCESSORS_CONF);

	return 4 * conf > 64 ? (int)(4 * conf) : 64;
}

static void test_invalid_nr_cpus_falls_back_to_default_with_warning(void **state)
{
	const char *bad[] = { "abc", "0", "-1", "65537", "3x" };
	char expect_out[32], expect_err[128];

	(void)state;
	snprintf(expect_out, sizeof(expect_out), "%d\n", default_nr_cpus());
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct child_out co;

		run_child(bad[i], &co);
		snprintf(expect_err, sizeof(expect_err), "ignoring BPFMEM_NR_CPUS=\"%s\"", bad[i]);
		assert_true(WIFEXITED(co.status));
		assert_int_equal(WEXITSTATUS(co.status), 0);
		assert_string_equal(co.out, expect_out);
		assert_non_null(strstr(co.err, expect_err));
	}
}

static void test_valid_nr_cpus_is_used_without_warning(void **state)
{
	struct child_out co;

	(void)state;
	run_child("7", &co);
	assert_true(WIFEXITED(co.status));
	assert_int_equal(WEXITSTATUS(co.status), 0);
	assert_string_equal(co.out, "7\n");
	assert_string_equal(co.err, "");
}

/* A thread waiting for itself on the shared CPU would hang the binary:
 * fail it instead of waiting for the ctest timeout. */
static void watchdog(int sig)
{
	static const char msg[] = "test_overflow_cpus: watchdog: no progress (deadlock?)\n";
	ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);

	(void)sig;
	(void)ignored;
	_exit(2);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nr_cpus_comes_from_environment),
		cmocka_unit_test(test_more_threads_than_cpus_all_allocate_through_shared_path),
		cmocka_unit_test(
			test_overflow_threads_never_get_null_while_shared_cache_has_objects),
		cmocka_unit_test(test_handlers_on_overflow_threads_reenter_shared_path_safely),
		cmocka_unit_test(test_invalid_nr_cpus_falls_back_to_default_with_warning),
		cmocka_unit_test(test_valid_nr_cpus_is_used_without_warning),
	};
	const char *env = getenv("BPFMEM_NR_CPUS");

	if (argc > 1 && !strcmp(argv[1], "--print-nr-cpus")) {
		printf("%d\n", bpfmem_nr_cpus());
		return 0;
	}
	/* the variable is read once at load: run a fresh copy with it set */
	if (!env || strcmp(env, NR_CPUS_UNDER_TEST)) {
		setenv("BPFMEM_NR_CPUS", NR_CPUS_UNDER_TEST, 1);
		execv("/proc/self/exe", argv);
		return 1;
	}
	signal(SIGALRM, watchdog);
	alarm(90);
	return t_run_group(tests, setup, teardown);
}
