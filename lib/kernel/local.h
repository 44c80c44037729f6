/* SPDX-License-Identifier: MIT */
/*
 * local_t: a counter touched only by its owning thread and by signal handlers
 * that interrupt that thread.  As with the kernel's local_t, no lock prefix is
 * needed: a handler runs to completion before the interrupted code resumes,
 * so program order plus compiler barriers is all the ordering there is.
 */
#ifndef BPFMEM_KERNEL_LOCAL_H
#define BPFMEM_KERNEL_LOCAL_H

#include <stdbool.h>
#include "compiler.h"

typedef struct {
	int counter;
} local_t;

static __always_inline int local_inc_return(local_t *l)
{
	int v = ++l->counter;

	/* the list access that follows must not be hoisted above the claim */
	barrier();
	return v;
}

static __always_inline void local_dec(local_t *l)
{
	/* the list access that precedes must be complete before the release */
	barrier();
	l->counter--;
}

/* The fast paths' form of the guard, which stores constants instead of
 * counting, is _bpfmem_fast_alloc/_free in <bpfmem.h>. */

#endif /* BPFMEM_KERNEL_LOCAL_H */
