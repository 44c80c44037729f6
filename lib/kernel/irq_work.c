/* SPDX-License-Identifier: MIT */
/*
 * The refill thread: userspace stand-in for the kernel's irq_work.  It
 * sleeps in poll(2) on an eventfd; raisers push the work onto a lock-free
 * queue and write the eventfd once per wake-up.  Lazy work waits for the
 * thread's tick instead, while it ticks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bug.h"
#include "irq_work.h"
#include "rcu.h"

static struct llist_head queue;		/* raisers add, the worker takes all */
static int efd = -1;			/* written by raisers, read by the worker */

/*
 * Worker lifecycle and completion notification, all under `lock`:
 * `completed` grows after every batch so waiters can sleep on `done`.
 */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;
static pthread_cond_t parked_cv = PTHREAD_COND_INITIALIZER;
static bool running;			/* a worker thread exists */
static bool park_req;			/* fork: worker must stop between batches */
static bool parked;			/* worker acknowledged park_req */
static pthread_t worker;

/*
 * Waking the thread is a write(2) and a wake-up, several microseconds on a
 * virtual machine, paid by the raiser inside its allocation; the kernel's
 * irq_work costs a self-interrupt, and its lazy kind not even that.  So:
 *  - `kicked`: a raiser wrote the eventfd since the worker last woke.
 *    Raisers set it (exchange) and only the one that set it writes; the
 *    worker clears it when it wakes, before it takes the queue, so a raiser
 *    that found it set has its work taken by that pass.
 *  - `ticking`: the worker wakes every IRQ_WORK_TICK_MS on its own, so a
 *    lazy raise only queues.  The worker sets it after running lazy work
 *    and clears it after IRQ_WORK_IDLE_TICKS ticks with no work at all,
 *    then looks at the queue once more; a lazy raiser queues, then reads
 *    it, and kicks if it is clear.  Fences on both sides (store-load): one
 *    of them sees the other.
 */
static _Atomic bool kicked;		/* raisers set, the worker clears */
static _Atomic bool ticking;		/* the worker writes, lazy raisers read */

#if BPFMEM_TEST_SEAMS
_Atomic unsigned long irq_work_seam_kicks;

bool irq_work_seam_ticking(void)
{
	return atomic_load(&ticking);
}
#endif

static void wake_worker(void)
{
	uint64_t one = 1;

	/* write(2) is async-signal-safe; EAGAIN only at counter overflow,
	 * when the worker has a wake-up pending anyway */
	ssize_t ignored = write(efd, &one, sizeof(one));
	(void)ignored;
}

static void kick_worker(void)
{
	if (atomic_load_explicit(&kicked, memory_order_relaxed) || atomic_exchange(&kicked, true))
		return;
#if BPFMEM_TEST_SEAMS
	atomic_fetch_add_explicit(&irq_work_seam_kicks, 1, memory_order_relaxed);
#endif
	wake_worker();
}

bool __irq_work_queue(struct irq_work *work, bool lazy)
{
	unsigned int old = atomic_load_explicit(&work->flags, memory_order_relaxed), set;

	/* a lazy raise marks only the work it queues itself as lazy; an
	 * urgent one takes the mark off a work that waits for the tick */
	do {
		if (old & IRQ_WORK_PENDING)
			set = lazy ? old : old & ~IRQ_WORK_LAZY;
		else
			set = old | IRQ_WORK_PENDING | IRQ_WORK_BUSY | (lazy ? IRQ_WORK_LAZY : 0);
	} while (set != old &&
		 !atomic_compare_exchange_weak_explicit(&work->flags, &old, set,
							memory_order_acq_rel,
							memory_order_relaxed));
	if (old & IRQ_WORK_PENDING) {
		/* queued already; an urgent raise of lazy work wakes for it */
		if (!lazy && (old & IRQ_WORK_LAZY))
			kick_worker();
		return false;
	}
	llist_add(&work->llnode, &queue);
	atomic_thread_fence(memory_order_seq_cst);
	if (!lazy || !atomic_load_explicit(&ticking, memory_order_relaxed))
		kick_worker();
	return true;
}

/* True if the work was queued lazily. */
static bool run_one(struct irq_work *work)
{
	/* clear PENDING before running: a raise during func queues it again */
	unsigned int old = atomic_fetch_and_explicit(&work->flags,
						     ~(IRQ_WORK_PENDING | IRQ_WORK_LAZY),
						     memory_order_acq_rel);
	unsigned int flags = old & ~(IRQ_WORK_PENDING | IRQ_WORK_LAZY);

	work->func(work);
	/* drop BUSY only if nobody queued it again meanwhile */
	atomic_compare_exchange_strong_explicit(&work->flags, &flags, flags & ~IRQ_WORK_BUSY,
						memory_order_release, memory_order_relaxed);
	return old & IRQ_WORK_LAZY;
}

/* Sleep until written to, or for a tick while ticking. */
static void worker_wait(bool tick)
{
	struct pollfd pfd = { .fd = efd, .events = POLLIN };
	int ready = poll(&pfd, 1, tick ? IRQ_WORK_TICK_MS : -1);
	uint64_t v;

	if (ready > 0 && read(efd, &v, sizeof(v)) < 0 && errno != EINTR && errno != EAGAIN)
		ready = -1;
	if (ready < 0 && errno != EINTR && errno != EAGAIN) {
		WARN_ONCE(1, "refill thread: eventfd wait failed (errno %d)", errno);
		usleep(1000);
	}
}

static void *worker_main(void *arg)
{
	int idle = 0;

	(void)arg;
	rcu_thread_online();	/* the work calls call_rcu */
	for (;;) {
		bool tick = atomic_load_explicit(&ticking, memory_order_relaxed), ran = false;
		bool lazy = false;
		struct llist_node *node, *next;

		worker_wait(tick);
		atomic_store(&kicked, false);
		atomic_thread_fence(memory_order_seq_cst);
		while ((node = llist_del_all(&queue))) {
			ran = true;
			/* oldest first, so a flush marker runs after what preceded it */
			llist_for_each_safe(node, next, llist_reverse_order(node))
				lazy |= run_one(container_of(node, struct irq_work, llnode));
		}
		if (ran)
			idle = 0;
		if (lazy && !tick) {
			atomic_store_explicit(&ticking, true, memory_order_relaxed);
		} else if (tick && !ran && ++idle >= IRQ_WORK_IDLE_TICKS) {
			atomic_store_explicit(&ticking, false, memory_order_relaxed);
			atomic_thread_fence(memory_order_seq_cst);
			/* a lazy raise that read `ticking` before the store */
			if (!llist_empty(&queue))
				atomic_store_explicit(&ticking, true, memory_order_relaxed);
			idle = 0;
		}
		pthread_mutex_lock(&lock);
		pthread_cond_broadcast(&done);
		if (park_req) {
			/* as liburcu's own call_rcu threads do while paused for
			 * fork: out of the memb/mb reader registry, so that the
			 * child does not wait for a thread it does not have */
			rcu_thread_offline();
			parked = true;
			pthread_cond_broadcast(&parked_cv);
			while (park_req)
				pthread_cond_wait(&parked_cv, &lock);
			parked = false;
			rcu_thread_online();
		}
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

/* Signals are blocked in the worker: a process-directed signal must run
 * the application's handler on one of its own threads, not on ours. */
static int spawn_worker(void)
{
	sigset_t all, old;
	int err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&worker, NULL, worker_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	pthread_detach(worker);
	running = true;
	return 0;
}

int irq_work_start(void)
{
	int err = 0;

	pthread_mutex_lock(&lock);
	if (!running) {
		if (efd < 0)
			efd = eventfd(0, EFD_CLOEXEC);
		if (efd < 0)
			err = -errno;
		else
			err = spawn_worker();
	}
	pthread_mutex_unlock(&lock);
	return err;
}

void irq_work_sync(struct irq_work *work)
{
	if (!irq_work_is_busy(work))
		return;
	pthread_mutex_lock(&lock);
	while (irq_work_is_busy(work))
		pthread_cond_wait(&done, &lock);
	pthread_mutex_unlock(&lock);
}

static void flush_marker(struct irq_work *work)
{
	(void)work;
}

void irq_work_flush(void)
{
	struct irq_work marker;

	if (!READ_ONCE(running))
		return;
	init_irq_work(&marker, flush_marker);
	irq_work_queue(&marker);
	irq_work_sync(&marker);
}

/* fork: the worker must not be inside a work (it may hold the ttrace lock,
 * or be halfway through a list) when the address space is copied. */
void irq_work_before_fork(void)
{
	pthread_mutex_lock(&lock);
	if (!running)
		return;		/* keep `lock` held until after fork */
	park_req = true;
	wake_worker();
	while (!parked)
		pthread_cond_wait(&parked_cv, &lock);
}

void irq_work_after_fork_parent(void)
{
	park_req = false;
	pthread_cond_broadcast(&parked_cv);
	pthread_mutex_unlock(&lock);
}

void irq_work_fork_fixup(struct irq_work *work)
{
	struct llist_node *pos;

	if (!(atomic_load_explicit(&work->flags, memory_order_relaxed) & IRQ_WORK_PENDING))
		return;
	for (pos = atomic_load_explicit(&queue.first, memory_order_relaxed); pos; pos = pos->next)
		if (pos == &work->llnode)
			return;
	llist_add(&work->llnode, &queue);
}

void irq_work_after_fork_child(void)
{
	bool was_running = running;

	/* the parent's worker does not exist here and the eventfd is shared
	 * with the parent: start over with fresh ones */
	pthread_mutex_init(&lock, NULL);
	pthread_cond_init(&done, NULL);
	pthread_cond_init(&parked_cv, NULL);
	park_req = parked = running = false;
	atomic_store(&kicked, false);
	atomic_store(&ticking, false);
	if (efd >= 0)
		close(efd);
	efd = eventfd(0, EFD_CLOEXEC);
	if (was_running && (efd < 0 || spawn_worker()))
		bpfmem_warn("fork child: cannot restart the refill thread");
	if (!llist_empty(&queue))
		wake_worker();
}
