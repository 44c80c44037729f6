// SPDX-License-Identifier: MIT
/*
 * fork() from a process whose threads are allocating and freeing with RCU,
 * so forks land while refill work and RCU callbacks are in flight.  Each
 * child checks the objects it inherited, allocates and frees normally, uses
 * RCU, creates and destroys an allocator, and tears the inherited ones down;
 * a hang is caught by alarm().
 */
#include "rel_common.h"
#include "memalloc.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/wait.h>
#include <setjmp.h>
#include <cmocka.h>

#define NR_WORKERS	2

/*
 * ThreadSanitizer keeps the parent's vanished threads registered in the
 * child; when the child restarts the refill thread, its pthread_t can match
 * one of them and TSan stops the child with exit code 66 ("dup thread with
 * used id") before the child's checks run.  Under TSan only the parent's
 * side (fork never hangs, the parent's objects stay intact) is checked.
 */
#if defined(__SANITIZE_THREAD__)
#define TSAN_CHILD_EXIT 66
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN_CHILD_EXIT 66
#endif
#endif
#define NR_SLOTS	128
/* a sanitized process has gigabytes of shadow mappings: each fork costs a
 * few hundred milliseconds there */
#if defined(__SANITIZE_ADDRESS__) || defined(TSAN_CHILD_EXIT)
#define NR_FORKS	60
#else
#define NR_FORKS	200
#endif
/* forks that must find work in flight, and children that must run every
 * check, for the run to count */
#define MIN_BUSY_FORKS	(NR_FORKS / 10)
/* Under TSan every child may be stopped before its checks (see above): the
 * children are checked in the plain and ASan builds, and there every child
 * must run every check.  Under TSan every child is either checked or
 * stopped, and the parent's side (no hang, forks with work in flight,
 * objects intact) is what the run shows. */
#ifdef TSAN_CHILD_EXIT
#define MIN_CHECKED	0
#else
#define MIN_CHECKED	NR_FORKS
#endif

static struct bpf_mem_alloc any_ma, fixed_ma;

struct worker {
	pthread_t thread;
	_Atomic(void *) slot[NR_SLOTS];
	size_t size[NR_SLOTS];
	uint64_t serial[NR_SLOTS];
	unsigned long ops, bad;
};

static struct worker workers[NR_WORKERS];
static atomic_bool stop;
static unsigned long forks_refill_busy, forks_rcu_busy;

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t serial = (uint64_t)(w - workers) << 40;

	for (unsigned long n = 0; !atomic_load_explicit(&stop, memory_order_relaxed); n++) {
		int i = (int)(n % NR_SLOTS);
		void *p = atomic_exchange(&w->slot[i], NULL);

		if (p) {
			if (rel_check(p, w->size[i], w->serial[i]))
				w->bad++;
			/* mostly RCU frees: the caches drain, so refills run all the time */
			if (n % 3)
				bpf_mem_free_rcu(&any_ma, p);
			else
				bpf_mem_free(&any_ma, p);
			w->ops++;
		}
		w->size[i] = rel_class_req[n % 11];
		p = bpf_mem_alloc(&any_ma, w->size[i]);
		if (!p)
			continue;
		w->serial[i] = ++serial;
		rel_stamp(p, w->size[i], w->serial[i]);
		atomic_store(&w->slot[i], p);
		w->ops++;
	}
	return NULL;
}

/* Sampled in our atfork prepare handler (runs before the library's): was
 * refill work or an RCU callback in flight as the fork began? */
static void sample_in_flight(void)
{
	bool refill = false, rcu = false;

	if (!any_ma.caches)
		return;
	for (int cpu = 0; cpu <= bpfmem_nr_cpus(); cpu++) {
		for (int i = 0; i < NUM_CACHES; i++) {
			struct bpf_mem_cache *c = cache_on(any_ma.caches, CACHE_OFF(i), cpu);

			refill |= irq_work_is_busy(&c->refill_work);
			rcu |= atomic_load(&c->call_rcu_in_progress) ||
			       atomic_load(&c->call_rcu_ttrace_in_progress);
		}
	}
	forks_refill_busy += refill;
	forks_rcu_busy += rcu;
}

static int leaked_reported;

static void child_warn(const char *msg, void *arg)
{
	int n;

	(void)arg;
	if (sscanf(msg, "bpf_mem_alloc_destroy: %d object", &n) == 1)
		leaked_reported += n;
	else
		leaked_reported += 1000;	/* any other warning fails the child */
}

/*
 * Exit codes name the failing step.  Every child allocates and frees on the
 * inherited and on a new allocator; every fourth (`full`) also frees with
 * RCU, waits for the callbacks and tears the inherited allocators down,
 * which costs grace periods (tens of ms with urcu-bp).
 */
static int child_main(bool full)
{
	struct bpf_mem_alloc fresh = { 0 };
	void *objs[64];

	/* a hang kills the child; the parent counts it as failed.  alarm():
	 * the child has no other thread to watch it */
	signal(SIGALRM, SIG_DFL);
	alarm(10);
	bpfmem_set_warn_handler(child_warn, NULL);
	/* objects the vanished threads published are intact */
	for (int t = 0; t < NR_WORKERS; t++)
		for (int i = 0; i < NR_SLOTS; i++) {
			void *p = atomic_load(&workers[t].slot[i]);

			if (p && rel_check(p, workers[t].size[i], workers[t].serial[i]))
				return 10;
		}
	/* the inherited allocators allocate and free normally, RCU included */
	for (int round = 0; round < 1; round++) {
		for (int i = 0; i < 64; i++) {
			objs[i] = i & 1 ? bpf_mem_cache_alloc_flags(&fixed_ma, BPFMEM_GFP_KERNEL)
					: bpf_mem_alloc(&any_ma, rel_class_req[i % 11]);
			if (!objs[i] && (i & 1))
				return 11;	/* GFP_KERNEL may not fail here */
			if (objs[i])
				rel_stamp(objs[i], i & 1 ? 48 : rel_class_req[i % 11], (uint64_t)i);
		}
		for (int i = 0; i < 64; i++) {
			if (!objs[i])
				continue;
			if (rel_check(objs[i], i & 1 ? 48 : rel_class_req[i % 11], (uint64_t)i))
				return 12;
			if (i & 1)
				full ? bpf_mem_cache_free_rcu(&fixed_ma, objs[i])
				     : bpf_mem_cache_free(&fixed_ma, objs[i]);
			else
				full ? bpf_mem_free_rcu(&any_ma, objs[i]) : bpf_mem_free(&any_ma, objs[i]);
		}
		if (full)
			bpfmem_rcu_barrier();	/* RCU callbacks and the refill thread run here */
	}
	if (full && !bpf_mem_alloc(&any_ma, 100)) {
		/* after a barrier the refill has run: an empty cache is a bug */
		return 13;
	}
	/* a new allocator works */
	if (bpf_mem_alloc_init(&fresh, 0, false))
		return 14;
	for (int i = 0; i < 64; i++) {
		void *p = bpf_mem_alloc(&fresh, rel_class_req[i % 11]);

		if (!p) {
			/* empty until the refill lands: one flush brings it */
			bpfmem_rcu_barrier();
			p = bpf_mem_alloc(&fresh, rel_class_req[i % 11]);
		}
		if (!p)
			return 15;
		i & 1 && full ? bpf_mem_free_rcu(&fresh, p) : bpf_mem_free(&fresh, p);
	}
	bpf_mem_alloc_destroy(&fresh);
	if (leaked_reported)
		return 16;
	if (!full)
		return 0;
	/* free what the vanished threads published, then tear down: only
	 * objects a worker held unpublished at the fork (one each) may leak */
	for (int t = 0; t < NR_WORKERS; t++)
		for (int i = 0; i < NR_SLOTS; i++) {
			void *p = atomic_load(&workers[t].slot[i]);

			if (p)
				bpf_mem_free(&any_ma, p);
		}
	bpf_mem_alloc_destroy(&any_ma);
	bpf_mem_alloc_destroy(&fixed_ma);
	/* +2: the probe above, and the forking thread's object freed only in the parent */
	if (leaked_reported > NR_WORKERS + 2)
		return 17;
	return 0;
}

static void test_fork_while_threads_allocate_child_works_normally(void **state)
{
	unsigned long ops = 0, bad = 0;
	int failed = 0, first_status = 0, tsan_stopped = 0, forked = 0, checked = 0;
	double t0 = rel_now();

	(void)state;
	rel_count_warnings();
	/* a deadlock in fork() itself would otherwise last until the ctest timeout */
	rel_watchdog(150, "stress_fork: the parent still forking after 150 s (deadlock in fork?)");
	assert_int_equal(pthread_atfork(sample_in_flight, NULL, NULL), 0);
	assert_int_equal(bpf_mem_alloc_init(&any_ma, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&fixed_ma, 48, false), 0);
	for (int i = 0; i < NR_WORKERS; i++)
		assert_int_equal(pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]), 0);

	for (int f = 0; f < NR_FORKS; f++) {
		/* the forking thread uses the library too, so it owns a vCPU */
		void *mine = bpf_mem_alloc(&any_ma, 300);
		pid_t pid;
		int status;

		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			_exit(child_main(f % 4 == 0));
		forked++;
		bpf_mem_free(&any_ma, mine);
		assert_int_equal(waitpid(pid, &status, 0), pid);
#ifdef TSAN_CHILD_EXIT
		if (WIFEXITED(status) && WEXITSTATUS(status) == TSAN_CHILD_EXIT) {
			tsan_stopped++;
			continue;
		}
#endif
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			if (!failed++)
				first_status = status;
		} else {
			checked++;	/* ran every check and passed */
		}
	}
	double secs = rel_now() - t0;

	atomic_store(&stop, true);
	for (int i = 0; i < NR_WORKERS; i++) {
		assert_int_equal(pthread_join(workers[i].thread, NULL), 0);
		ops += workers[i].ops;
		bad += workers[i].bad;
		for (int s = 0; s < NR_SLOTS; s++) {
			void *p = atomic_exchange(&workers[i].slot[s], NULL);

			if (p)
				bpf_mem_free(&any_ma, p);
		}
	}
	rel_report("fork", "cfg_threads=%d forks=%d forks_with_refill_in_flight=%lu "
		   "forks_with_rcu_in_flight=%lu children_checked=%d parent_ops=%lu "
		   "failed_children=%d first_failure_status=0x%x children_stopped_by_tsan=%d "
		   "seconds=%.1f bad=%lu", NR_WORKERS + 1, forked, forks_refill_busy,
		   forks_rcu_busy, checked, ops, failed, first_status, tsan_stopped, secs, bad);
	assert_int_equal(failed, 0);
	assert_int_equal(bad, 0);
	assert_int_equal(checked + tsan_stopped, forked);
	/* the cases under test happened: forks with work in flight, and children
	 * that ran their checks (under TSan some are stopped before they can) */
	if (forks_refill_busy < MIN_BUSY_FORKS || forks_rcu_busy < MIN_BUSY_FORKS ||
	    checked < MIN_CHECKED)
		fail_msg("stress_fork did not get there: %lu forks with refill work in flight, %lu "
			 "with an RCU callback in flight (want >= %d each), %d children checked "
			 "(want >= %d)", forks_refill_busy, forks_rcu_busy, MIN_BUSY_FORKS, checked,
			 MIN_CHECKED);
	bpf_mem_alloc_destroy(&any_ma);
	bpf_mem_alloc_destroy(&fixed_ma);
	assert_int_equal(atomic_load(&rel_warnings), 0);
	rel_watchdog(0, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fork_while_threads_allocate_child_works_normally),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
