/* SPDX-License-Identifier: MIT */
/*
 * call_rcu_hurry(): the kernel's non-lazy call_rcu, on a grace-period thread
 * of its own.  liburcu's call_rcu thread sleeps 10 ms after every batch so
 * that callbacks pile up; objects an allocator gets back only after their
 * grace period cannot wait that long (a stream of *_free_rcu would hold
 * 10 ms worth of objects in flight, and go to the backend for new ones
 * meanwhile).  This thread starts the next grace period as soon as one has
 * ended and callbacks are queued, but no sooner than RCU_HURRY_GAP_NS after
 * the previous one started: a grace period interrupts every CPU that runs
 * a thread of this process (urcu's membarrier; on a virtual machine an
 * inter-processor interrupt is a few microseconds of the workload's time),
 * and back to back they cost a stream of *_free_rcu more in interrupted
 * work than the gap costs in objects in flight.  A barrier's caller does
 * not wait for the gap.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "bug.h"
#include "rcu.h"

/*
 * Everything under `lock`.  Callers are threads in process context (the
 * refill thread, RCU callbacks, destroy), never signal handlers.  The
 * thread takes the whole queue, drops the lock, waits for a grace period
 * and runs the callbacks, which may queue more (the next stage).
 */
#define RCU_HURRY_GAP_NS	100000L

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake;	/* work queued, a barrier waits, or park (CLOCK_MONOTONIC) */
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;	/* `finished` grew, or parked */
static struct rcu_head *first, **last = &first;	/* FIFO, linked through head->next */
static unsigned long queued, finished;		/* callbacks queued, and run, ever */
static int barriers;		/* callers waiting in rcu_hurry_barrier() */
static bool running;		/* a thread exists */
static bool idle;		/* it waits on `wake` with nothing queued */
static bool park_req, parked;	/* fork: stop between grace periods */
static pthread_t thread;

__attribute__((constructor)) static void wake_init(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&wake, &attr);
	pthread_condattr_destroy(&attr);
}

static struct timespec ts_add(struct timespec t, long ns)
{
	t.tv_nsec += ns;
	while (t.tv_nsec >= 1000000000L) {
		t.tv_nsec -= 1000000000L;
		t.tv_sec++;
	}
	return t;
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void *hurry_main(void *arg)
{
	struct timespec next_start;	/* of the next grace period, at the earliest */

	(void)arg;
	rcu_thread_online();	/* the callbacks call call_rcu (tasks trace) */
	/* liburcu creates its call_rcu thread on the first call_rcu, under
	 * the mutex its fork handler holds while it pauses that thread: a
	 * callback of ours must never be that first call, or a fork would
	 * wait for it while it waits for the fork */
	RCU_TRACE(call_ready)();
	clock_gettime(CLOCK_MONOTONIC, &next_start);
	pthread_mutex_lock(&lock);
	for (;;) {
		struct rcu_head *head, *next;
		unsigned long n = 0;
		struct timespec now;

		while (!first || park_req) {
			if (park_req) {
				/* as liburcu's call_rcu threads do while paused
				 * for fork: out of the memb/mb reader registry */
				rcu_thread_offline();
				parked = true;
				pthread_cond_broadcast(&done);
				while (park_req)
					pthread_cond_wait(&wake, &lock);
				parked = false;
				rcu_thread_online();
				continue;
			}
			idle = true;
			pthread_cond_wait(&wake, &lock);
			idle = false;
		}
		/* the gap: callbacks queued meanwhile share the grace period */
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!barriers && ts_before(&now, &next_start)) {
			pthread_cond_timedwait(&wake, &lock, &next_start);
			continue;	/* park, a barrier, or the gap is over */
		}
		next_start = ts_add(now, RCU_HURRY_GAP_NS);
		head = first;
		first = NULL;
		last = &first;
		pthread_mutex_unlock(&lock);

		rcudom_normal_synchronize();
		for (; head; head = next, n++) {
			next = (struct rcu_head *)head->next.next;
			head->func(head);
		}

		pthread_mutex_lock(&lock);
		finished += n;
		pthread_cond_broadcast(&done);
	}
	return NULL;
}

/* Under `lock`.  Signals blocked: a process-directed signal must run the
 * application's handler on one of its own threads. */
static void spawn(void)
{
	sigset_t all, old;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	running = !pthread_create(&thread, NULL, hurry_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (running)
		pthread_detach(thread);
	else
		bpfmem_warn("cannot start the RCU grace-period thread: frees wait for the next try");
}

void call_rcu_hurry(struct rcu_head *head, void (*func)(struct rcu_head *))
{
#ifdef __SANITIZE_THREAD__
	__tsan_release(head);
#endif
	head->func = func;
	head->next.next = NULL;
	pthread_mutex_lock(&lock);
	*last = head;
	last = (struct rcu_head **)&head->next.next;
	queued++;
	if (!running)
		spawn();
	else if (idle)
		pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
}

/* Waits for the callbacks queued before the call, not for those they queue. */
void rcu_hurry_barrier(void)
{
	pthread_mutex_lock(&lock);
	if (!running && first)
		spawn();	/* an earlier start failed */
	barriers++;
	pthread_cond_signal(&wake);	/* out of the gap */
	for (unsigned long target = queued; finished < target && running;)
		pthread_cond_wait(&done, &lock);
	barriers--;
	pthread_mutex_unlock(&lock);
#ifdef __SANITIZE_THREAD__
	__tsan_acquire(&rcu_tsan_gp_token);
#endif
}

/*
 * fork, in two steps around liburcu's own handlers.  First, before them
 * (they take the locks a grace period needs, so the thread must not be
 * inside one), park the thread between grace periods and let go of `lock`:
 * liburcu pauses its call_rcu threads next, and their callbacks may still
 * queue here.  Then, after them, take `lock` and hold it across the fork,
 * so that no caller is halfway through the queue when it is copied.
 */
void rcu_hurry_park_for_fork(void)
{
	pthread_mutex_lock(&lock);
	if (running) {
		park_req = true;
		pthread_cond_signal(&wake);
		while (!parked)
			pthread_cond_wait(&done, &lock);
	}
	pthread_mutex_unlock(&lock);
}

void rcu_hurry_before_fork(void)
{
	pthread_mutex_lock(&lock);
}

void rcu_hurry_after_fork_parent(void)
{
	park_req = false;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
}

/* The thread does not exist here; it parked between grace periods, so the
 * callbacks it had not run are all on the queue: the child's, on a new
 * thread. */
void rcu_hurry_after_fork_child(void)
{
	pthread_mutex_init(&lock, NULL);
	wake_init();
	pthread_cond_init(&done, NULL);
	park_req = parked = running = idle = false;
	barriers = 0;
	if (first)
		spawn();
}
