/* SPDX-License-Identifier: MIT */
/*
 * Virtual CPUs.  Each live thread owns at most one virtual CPU ("slot") at a
 * time, which stands for the kernel's "this CPU, migration disabled".  CPU
 * number nr_cpu_ids is the shared overflow CPU: threads that find every slot
 * taken (or that are exiting) use it, serialised by a trylock instead of
 * ownership.  Per-CPU areas therefore hold nr_cpu_ids + 1 copies.
 */
#ifndef BPFMEM_KERNEL_CPU_H
#define BPFMEM_KERNEL_CPU_H

#include <stdbool.h>
#include <bpfmem.h>
#include "compiler.h"

/* Constant after library load: bpfmem_nr_cpus(). */
extern int nr_cpu_ids __hidden;

/*
 * The calling thread's CPU: >= 0 an owned slot; otherwise one of the
 * CPU_STATE_* thread states below (never a per-CPU index).
 */
#define CPU_STATE_NONE		(-1)	/* never attached, or detached */
#define CPU_STATE_SHARED	(-2)	/* every slot was taken: uses SHARED_CPU */
#define CPU_STATE_EXITING	(-3)	/* thread-exit destructor ran: SHARED_CPU only */

/*
 * Kept as the fast paths use it, in the thread variable <bpfmem.h> declares
 * (BPFMEM_FAST_THIS_CPU, read by inlined fast paths too): a slot's byte
 * offset in every per-CPU area, a state's offset into the guard copy one
 * stride before copy 0 (percpu.c), whose caches nobody sets up.  Each state
 * has a slot of CPU_STATE_SLOT bytes there of its own, so that what one
 * state's thread writes (`active`, for a moment) is never a count another
 * reads.  Written only by the thread itself (and its signal handlers, which
 * run to completion); initial-exec TLS, see compiler.h.
 */
#define bpfmem_this_cpu_off	BPFMEM_FAST_THIS_CPU
#define CPU_STATE_SLOT		32L

static __always_inline long cpu_off_of(int cpu)
{
	return cpu >= 0 ? (long)cpu * BPFMEM_FAST_CPU_STRIDE
			: -BPFMEM_FAST_CPU_STRIDE + (-1L - cpu) * CPU_STATE_SLOT;
}

static __always_inline int cpu_of_off(long off)
{
	return off >= 0 ? (int)(off / BPFMEM_FAST_CPU_STRIDE)
			: (int)(-1 - (off + BPFMEM_FAST_CPU_STRIDE) / CPU_STATE_SLOT);
}

/* The calling thread's CPU or state. */
static __always_inline int this_cpu_state(void)
{
	return cpu_of_off(bpfmem_this_cpu_off);
}

/* The shared overflow CPU's per-CPU index (a CPU number, not a state). */
#define SHARED_CPU	nr_cpu_ids

#define for_each_possible_cpu(cpu) for ((cpu) = 0; (cpu) <= nr_cpu_ids; (cpu)++)

/* AS.  Slow path of smp_processor_id(): attach to a free slot, lock-free. */
int cpu_attach_any(void) __hidden;

/*
 * AS.  The caller's CPU, attaching on first use: an owned slot, or
 * SHARED_CPU when none is free.  Callers test `cpu == SHARED_CPU` to pick
 * the serialised path.
 */
static __always_inline int smp_processor_id(void)
{
	long off = bpfmem_this_cpu_off;

	if (likely(off >= 0))
		return cpu_of_off(off);
	return cpu_attach_any();
}

/* True when slot `cpu` is owned by a live thread now (racy by nature). */
bool cpu_in_use(int cpu) __hidden;

int cpu_init(void) __hidden;
void cpu_fork_child(void) __hidden;

/*
 * CPU hotplug, as far as a process has it: `online(cpu)` runs when a
 * thread explicitly attaches to `cpu`, in that thread, in process context
 * (users fill what they left empty on never-used CPUs).  Notifiers are
 * never removed; `nb` must stay valid for the life of the process.
 */
struct cpu_online_notifier {
	void (*online)(int cpu);
	struct cpu_online_notifier *next;
};

/* Any context but a signal handler; lock-free. */
void register_cpu_online_notifier(struct cpu_online_notifier *nb) __hidden;

#endif /* BPFMEM_KERNEL_CPU_H */
