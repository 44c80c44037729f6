/* SPDX-License-Identifier: MIT */
/*
 * The profiler: per-thread CPU-time timers deliver SIGPROF to the thread they measure
 * (timer_create with SIGEV_THREAD_ID); the handler takes a record from a fixed-size
 * bpf_mem_alloc cache, fills in the interrupted PC, thread id, time and a short
 * frame-pointer stack walk, and pushes it on a lock-free list.  A consumer thread takes the
 * whole list at once, resolves addresses with dladdr(), counts per function and frees the
 * records: they flow from the sampled threads' virtual CPUs to the consumer's, which is the
 * cross-CPU traffic the allocator's refill and trim exist for.
 */
#define _GNU_SOURCE
#include "profiler.h"

#include <bpfmem.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define PROF_MAX_FRAMES		16
#define PROF_MAX_THREADS	256
#define PROF_STACK_WINDOW	(8u << 20)	/* a frame record lies this close above sp */
#define PROF_FUNCS		4096		/* distinct functions (power of two) */
#define PROF_DRAIN_NS		5000000		/* consumer: drain every 5 ms ... */
#define PROF_SCAN_EVERY		4		/* ... and look for new threads every 4th time */

struct sample {
	struct sample *next;	/* the published list */
	uintptr_t pc;
	pid_t tid;
	int depth;
	uint64_t time_ns;
	uintptr_t ret[PROF_MAX_FRAMES];	/* return addresses, innermost first */
};

struct func {
	const void *key;	/* symbol start, module base for unnamed code, NULL: empty */
	const char *name;
	long self, total;
	unsigned long last_sample;	/* counts `total` once per sample (recursion) */
};

static struct {
	struct bpf_mem_alloc ma;	/* sample records */
	_Atomic(struct sample *) head;	/* handlers push, the consumer takes all */
	atomic_bool running;		/* handlers take samples only while set */
	_Atomic int in_handler;		/* handlers past the running check */
	_Atomic long lost, samples;
	pid_t pid;
	_Atomic pid_t consumer_tid;	/* set by the consumer when it starts */
	int stack_walk;
	pthread_t consumer;
	atomic_bool stop_consumer;
	struct sigaction old_action;
	long interval_ns;
	/* consumer and start/stop only (the consumer is joined before they are read) */
	struct { pid_t tid; timer_t timer; } threads[PROF_MAX_THREADS];
	int nr_threads;
	long frames;
	unsigned long seq;
	struct func funcs[PROF_FUNCS];
	int nr_funcs;
} prof;

/* ---- the signal handler ---- */

/*
 * Read `len` bytes at `addr` without faulting: the kernel copies them and answers EFAULT for
 * an unmapped or protected page, so a wrong frame pointer ends the walk instead of the
 * process.  A system call: async-signal-safe.
 */
static bool safe_read(void *dst, uintptr_t addr, size_t len)
{
	struct iovec local = { dst, len }, remote = { (void *)addr, len };

	return process_vm_readv(prof.pid, &local, 1, &remote, 1, 0) == (ssize_t)len;
}

static void regs_of(const ucontext_t *uc, uintptr_t *pc, uintptr_t *fp, uintptr_t *sp)
{
#if defined(__x86_64__)
	*pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	*fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
	*sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
	*pc = (uintptr_t)uc->uc_mcontext.pc;
	*fp = (uintptr_t)uc->uc_mcontext.regs[29];
	*sp = (uintptr_t)uc->uc_mcontext.sp;
#else
#error "profiler: add the interrupted PC, frame pointer and stack pointer of this architecture"
#endif
}

/*
 * Both ABIs keep a frame record {caller's frame pointer, return address} where the frame
 * pointer points.  Bounds: a record lies above sp, within PROF_STACK_WINDOW, word-aligned,
 * each one higher than the last (the stack grows down), and it is read with safe_read():
 * code built without frame pointers (libc's thread start) leaves garbage in the register,
 * which these checks turn into the end of the walk.
 */
static int walk_stack(uintptr_t fp, uintptr_t sp, uintptr_t *ret, int max)
{
	int n = 0;

	if (!prof.stack_walk)
		return 0;
	while (n < max) {
		uintptr_t rec[2];

		if (fp < sp || fp - sp > PROF_STACK_WINDOW || (fp & (sizeof(uintptr_t) - 1)))
			break;
		if (!safe_read(rec, fp, sizeof(rec)) || !rec[1])
			break;
		ret[n++] = rec[1];
		if (rec[0] <= fp)
			break;
		fp = rec[0];
	}
	return n;
}

static void on_sigprof(int sig, siginfo_t *si, void *ucv)
{
	int saved_errno = errno;
	struct sample *s;
	uintptr_t fp, sp;
	struct timespec ts;

	(void)sig;
	(void)si;
	atomic_fetch_add(&prof.in_handler, 1);
	if (!atomic_load(&prof.running))
		goto out;
	/* malloc() here could deadlock on the lock of the malloc() this thread was in */
	s = bpf_mem_cache_alloc(&prof.ma);
	if (!s) {
		atomic_fetch_add_explicit(&prof.lost, 1, memory_order_relaxed);
		goto out;
	}
	regs_of(ucv, &s->pc, &fp, &sp);
	s->tid = gettid();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	s->time_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	s->depth = walk_stack(fp, sp, s->ret, PROF_MAX_FRAMES);
	/* llist_add: the consumer takes the whole list with one exchange, so no ABA */
	s->next = atomic_load_explicit(&prof.head, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(&prof.head, &s->next, s, memory_order_release,
						      memory_order_relaxed))
		;
out:
	atomic_fetch_sub(&prof.in_handler, 1);
	errno = saved_errno;
}

/* ---- timers ---- */

/* The CPU-time clock of thread `tid`: Linux's encoding, which pthread_getcpuclockid() also
 * uses, for threads known only by their id. */
static clockid_t thread_cpu_clock(pid_t tid)
{
	return (clockid_t)((~(unsigned int)tid << 3) | 6);
}

static bool has_timer(pid_t tid)
{
	for (int i = 0; i < prof.nr_threads; i++)
		if (prof.threads[i].tid == tid)
			return true;
	return false;
}

/* Consumer or prof_start: a timer for every thread that has none yet. */
static void scan_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) && prof.nr_threads < PROF_MAX_THREADS) {
		pid_t tid = (pid_t)atoi(e->d_name);
		struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGPROF };
		struct itimerspec its = { .it_interval = { 0, prof.interval_ns },
					  .it_value = { 0, prof.interval_ns } };
		timer_t t;

		if (tid <= 0 || tid == prof.consumer_tid || has_timer(tid))
			continue;
		sev._sigev_un._tid = tid;	/* glibc 2.36 has no sigev_notify_thread_id */
		if (timer_create(thread_cpu_clock(tid), &sev, &t))
			continue;	/* the thread has exited meanwhile */
		timer_settime(t, 0, &its, NULL);
		prof.threads[prof.nr_threads].tid = tid;
		prof.threads[prof.nr_threads].timer = t;
		prof.nr_threads++;
	}
	closedir(d);
}

/* ---- the consumer ---- */

static struct func *func_of(uintptr_t addr)
{
	Dl_info di;
	const void *key = NULL;
	const char *name = "[unknown]";
	uintptr_t h;

	if (dladdr((void *)addr, &di)) {
		if (di.dli_sname && di.dli_saddr) {
			key = di.dli_saddr;
			name = di.dli_sname;
		} else if (di.dli_fname) {
			/* no symbol: charge the module ("[libc.so.6]") */
			key = di.dli_fbase;
			name = di.dli_fname;
		}
	}
	h = ((uintptr_t)key >> 4) * 0x9e3779b97f4a7c15ull;
	for (unsigned int i = 0; i < PROF_FUNCS; i++) {
		struct func *f = &prof.funcs[(h + i) & (PROF_FUNCS - 1)];

		if (f->name && f->key == key)
			return f;
		if (!f->name) {
			if (prof.nr_funcs == PROF_FUNCS - 1)
				return NULL;
			f->key = key;
			f->name = name;
			prof.nr_funcs++;
			return f;
		}
	}
	return NULL;
}

static void count_sample(const struct sample *s)
{
	struct func *f = func_of(s->pc);

	prof.seq++;
	if (f) {
		f->self++;
		f->total++;
		f->last_sample = prof.seq;
	}
	/* a return address is one past the call: look up the call itself */
	for (int i = 0; i < s->depth; i++) {
		f = func_of(s->ret[i] - 1);
		if (f && f->last_sample != prof.seq) {
			f->total++;
			f->last_sample = prof.seq;
		}
	}
	prof.frames += s->depth;
}

static void drain(void)
{
	struct sample *s = atomic_exchange_explicit(&prof.head, NULL, memory_order_acquire);

	while (s) {
		struct sample *next = s->next;

		count_sample(s);
		bpf_mem_cache_free(&prof.ma, s);
		atomic_fetch_add_explicit(&prof.samples, 1, memory_order_relaxed);
		s = next;
	}
}

static void *consumer(void *arg)
{
	(void)arg;
	prof.consumer_tid = gettid();
	for (unsigned long round = 1; !atomic_load(&prof.stop_consumer); round++) {
		struct timespec ts = { 0, PROF_DRAIN_NS };

		nanosleep(&ts, NULL);
		drain();
		if (round % PROF_SCAN_EVERY == 0)
			scan_threads();
	}
	drain();
	return NULL;
}

/* ---- start, stop, results ---- */

int prof_start(unsigned int hz)
{
	struct sigaction sa = { .sa_sigaction = on_sigprof, .sa_flags = SA_SIGINFO | SA_RESTART };
	uintptr_t probe[2] = { 0, 0 }, copy[2];
	int err;

	if (!hz || hz > 100000)
		return -EINVAL;
	prof.pid = getpid();
	prof.interval_ns = 1000000000l / (long)hz;
	/* can this process read its own memory this way (a seccomp filter may say no)? */
	prof.stack_walk = 1;
	prof.stack_walk = safe_read(copy, (uintptr_t)probe, sizeof(probe));
	err = bpf_mem_alloc_init(&prof.ma, sizeof(struct sample), false);
	if (err)
		return err;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPROF, &sa, &prof.old_action);
	atomic_store(&prof.running, true);
	err = pthread_create(&prof.consumer, NULL, consumer, NULL);
	if (err) {
		atomic_store(&prof.running, false);
		sigaction(SIGPROF, &prof.old_action, NULL);
		bpf_mem_alloc_destroy(&prof.ma);
		return -err;
	}
	while (!prof.consumer_tid)	/* scan_threads() must skip the consumer */
		sched_yield();
	scan_threads();
	return 0;
}

void prof_stop(void)
{
	atomic_store(&prof.running, false);
	atomic_store(&prof.stop_consumer, true);
	pthread_join(prof.consumer, NULL);
	for (int i = 0; i < prof.nr_threads; i++)
		timer_delete(prof.threads[i].timer);
	/* a handler that got past the running check is about to publish: wait for it */
	while (atomic_load(&prof.in_handler))
		sched_yield();
	drain();
	sigaction(SIGPROF, &prof.old_action, NULL);
	bpf_mem_alloc_destroy(&prof.ma);
}

long prof_samples(void)
{
	return atomic_load_explicit(&prof.samples, memory_order_relaxed);
}

static int by_self(const void *a, const void *b)
{
	const struct func *x = a, *y = b;

	return (y->self > x->self) - (y->self < x->self);
}

int prof_top(struct prof_entry *out, int n)
{
	static struct func sorted[PROF_FUNCS];
	int k = 0;

	for (int i = 0; i < PROF_FUNCS; i++)
		if (prof.funcs[i].name)
			sorted[k++] = prof.funcs[i];
	qsort(sorted, (size_t)k, sizeof(sorted[0]), by_self);
	for (int i = 0; i < n && i < k; i++) {
		out[i].name = sorted[i].name;
		out[i].self = sorted[i].self;
		out[i].total = sorted[i].total;
	}
	return n < k ? n : k;
}

void prof_get_stats(struct prof_stats *st)
{
	st->samples = prof_samples();
	st->lost = atomic_load(&prof.lost);
	st->frames = prof.frames;
	st->threads = prof.nr_threads;
	st->stack_walk = prof.stack_walk;
}

void prof_print(FILE *f, int n)
{
	struct prof_entry *top = calloc((size_t)n, sizeof(*top));
	struct prof_stats st;
	int k;

	if (!top)
		return;
	prof_get_stats(&st);
	k = prof_top(top, n);
	fprintf(f, "%4s %8s %7s %8s %7s  %s\n", "rank", "self", "self%", "total", "total%",
		"function");
	for (int i = 0; i < k; i++)
		fprintf(f, "%4d %8ld %6.1f%% %8ld %6.1f%%  %s\n", i + 1, top[i].self,
			100.0 * (double)top[i].self / (double)(st.samples ? st.samples : 1),
			top[i].total,
			100.0 * (double)top[i].total / (double)(st.samples ? st.samples : 1),
			top[i].name);
	fprintf(f, "samples: %ld from %d threads; lost to an empty cache: %ld (%.2f%%); "
		"stack walk: %s, %.1f frames per sample\n",
		st.samples, st.threads, st.lost,
		100.0 * (double)st.lost / (double)(st.samples + st.lost ? st.samples + st.lost : 1),
		st.stack_walk ? "frame pointers" : "unavailable (process_vm_readv refused)",
		(double)st.frames / (double)(st.samples ? st.samples : 1));
	free(top);
}
