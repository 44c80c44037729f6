/* SPDX-License-Identifier: MIT */
/*
 * A sampling profiler whose SIGPROF handler allocates its sample records with libbpfmem:
 * malloc() is not async-signal-safe, bpf_mem_cache_alloc() is.  prof_start() puts a
 * CPU-time timer on every thread of the process; a consumer thread aggregates the samples
 * by function and frees them.
 */
#ifndef PROFILER_H
#define PROFILER_H

#include <stdio.h>

struct prof_entry {
	const char *name;	/* symbol from dladdr(), or "[module]" / "[unknown]" */
	long self;		/* samples whose interrupted PC was in this function */
	long total;		/* samples with this function anywhere on the walked stack */
};

struct prof_stats {
	long samples;		/* records aggregated */
	long lost;		/* handler runs that found the sample cache empty */
	long frames;		/* return addresses found by the stack walks */
	int threads;		/* threads that got a timer */
	int stack_walk;		/* 1: the frame-pointer walk can read the stack here */
};

/* P.  Sample every thread of the process at `hz` per second of its CPU time, threads
 * started later included (found by the consumer within 20 ms).  0 or a negative errno. */
int prof_start(unsigned int hz);
/* P.  Stop sampling and aggregate what is left.  The results stay readable. */
void prof_stop(void);
/* AS.  Samples aggregated so far. */
long prof_samples(void);
/* P.  After prof_stop(): the top `n` functions by self samples, most first; returns how
 * many were filled. */
int prof_top(struct prof_entry *out, int n);
void prof_get_stats(struct prof_stats *st);
/* P.  After prof_stop(): the top-`n` table and the sample counts. */
void prof_print(FILE *f, int n);

#endif /* PROFILER_H */
