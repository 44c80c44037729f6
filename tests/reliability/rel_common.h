/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers of the reliability tests: the load report line that
 * gen-reliability-doc.sh collects, object stamping, warning counting and
 * backend (slab) balance checks.
 */
#ifndef BPFMEM_REL_COMMON_H
#define BPFMEM_REL_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

#include <bpfmem.h>
#include "kernel/slab.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Request sizes that land in each of the 11 any-size classes, in class
 * order (unit size minus the 8-byte header). */
static const size_t rel_class_req[11] = { 88, 184, 8, 24, 56, 120, 248, 504, 1016, 2040, 4088 };

/*
 * One line per test on stdout, "RELIABILITY name key=value ...".  The doc
 * generator collects these lines, so the table shows the load each run
 * really held rather than what the test was configured for.
 */
static inline void rel_report(const char *name, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	printf("RELIABILITY %s %s\n", name, buf);
	fflush(stdout);
}

/* Seconds each stress phase runs: BPFMEM_STRESS_SECONDS, default `def`. */
static inline double rel_seconds(double def)
{
	const char *s = getenv("BPFMEM_STRESS_SECONDS");
	double v = s ? atof(s) : 0;

	return v > 0 ? v : def;
}

static inline double rel_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline pid_t rel_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/*
 * Stamp every word of an object with a value derived from its address and a
 * tag; a double hand-out or a write by the allocator into a live object
 * breaks the stamp of one of the two owners.  Async-signal-safe.
 */
static inline uint64_t rel_word(const void *obj, uint64_t tag, size_t i)
{
	return ((uint64_t)(uintptr_t)obj * 0x9e3779b97f4a7c15ull) ^ tag ^ (i * 0x100000001b3ull);
}

static inline void rel_stamp(void *obj, size_t size, uint64_t tag)
{
	uint64_t *w = obj;

	for (size_t i = 0; i < size / 8; i++)
		w[i] = rel_word(obj, tag, i);
}

static inline int rel_check(const void *obj, size_t size, uint64_t tag)
{
	const uint64_t *w = obj;

	for (size_t i = 0; i < size / 8; i++)
		if (w[i] != rel_word(obj, tag, i))
			return -1;
	return 0;
}

/*
 * Ownership: word 0 of an object we hold carries REL_CLAIMED, swapped in
 * when the allocator hands the object out and replaced by REL_RETURNED just
 * before we free it.  Finding REL_CLAIMED already there means the object
 * was handed out twice, whatever the timing of the stamps' checks (stamp
 * the words after word 0).  Async-signal-safe.
 */
#define REL_CLAIMED	0xc1a1bedc1a1bedc1ull
#define REL_RETURNED	0x7e7e7e7e7e7e7e7eull

static inline int rel_claim(void *obj)
{
	return atomic_exchange((_Atomic uint64_t *)obj, REL_CLAIMED) == REL_CLAIMED ? -1 : 0;
}

static inline int rel_unclaim(void *obj)
{
	return atomic_exchange((_Atomic uint64_t *)obj, REL_RETURNED) == REL_CLAIMED ? 0 : -1;
}

/*
 * A hang fails the test with a line naming it, instead of running into the
 * ctest timeout: rel_watchdog(s, what) arms the watchdog, rel_watchdog(0,
 * NULL) disarms it.  Lines start with "WATCHDOG:" (the mutation step counts
 * them as hangs, not as checks that caught something).  A thread, not
 * alarm(): ThreadSanitizer delivers a signal only when the thread it picks
 * reaches one of its own points, which a thread stuck in a loop never does.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const char *what;	/* armed: what is running */
	struct timespec until;
	unsigned long gen;	/* +1 per arm or disarm */
	bool started;
} rel_wd = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static inline void *rel_watchdog_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&rel_wd.lock);
	for (;;) {
		unsigned long gen = rel_wd.gen;

		if (!rel_wd.what) {
			pthread_cond_wait(&rel_wd.cond, &rel_wd.lock);
			continue;
		}
		if (pthread_cond_timedwait(&rel_wd.cond, &rel_wd.lock, &rel_wd.until) == ETIMEDOUT &&
		    rel_wd.gen == gen && rel_wd.what) {
			fprintf(stderr, "WATCHDOG: no progress: %s\n", rel_wd.what);
			fflush(stderr);
			_exit(3);
		}
	}
	return NULL;
}

static inline void rel_watchdog(unsigned int seconds, const char *what)
{
	pthread_mutex_lock(&rel_wd.lock);
	if (!rel_wd.started) {
		sigset_t all, old;
		pthread_t t;

		/* the tests' signals never land on it */
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		rel_wd.started = pthread_create(&t, NULL, rel_watchdog_main, NULL) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (rel_wd.started)
			pthread_detach(t);
	}
	clock_gettime(CLOCK_REALTIME, &rel_wd.until);
	rel_wd.until.tv_sec += seconds;
	rel_wd.what = seconds ? what : NULL;
	rel_wd.gen++;
	pthread_cond_signal(&rel_wd.cond);
	pthread_mutex_unlock(&rel_wd.lock);
}

/* Warnings from the library (leak reports at destroy, WARN_ON_ONCE). */
static _Atomic long rel_warnings;
static char rel_last_warning[256];

static inline void rel_warn_handler(const char *msg, void *arg)
{
	(void)arg;
	atomic_fetch_add(&rel_warnings, 1);
	strncpy(rel_last_warning, msg, sizeof(rel_last_warning) - 1);
}

static inline void rel_count_warnings(void)
{
	bpfmem_set_warn_handler(rel_warn_handler, NULL);
}

/* Backend objects outstanding (given out and not yet taken back). */
static inline long rel_backend_outstanding(void)
{
	struct slab_stats st;

	slab_get_stats(&st);
	return st.allocs - st.frees;
}

/* Objects an allocator holds from the backend, over every size class. */
static inline long rel_ma_outstanding(const struct bpf_mem_alloc *ma)
{
	int n = bpfmem_nr_size_classes(ma);
	long sum = 0;

	for (int i = 0; i < n; i++) {
		struct bpfmem_cache_stats st = { .sz = sizeof(st) };

		if (bpfmem_cache_stats(ma, i, &st))
			continue;
		sum += (long)st.backend_allocs - (long)st.backend_frees;
	}
	return sum;
}

#endif /* BPFMEM_REL_COMMON_H */
