/* SPDX-License-Identifier: MIT */
/* Library start-up, and the allocator core's fork hooks. */
#ifndef BPFMEM_KERNEL_INIT_H
#define BPFMEM_KERNEL_INIT_H

#include "compiler.h"

/* P.  Idempotent: virtual CPUs and fork handlers.  0 or -ENOMEM. */
int bpfmem_runtime_init(void) __hidden;

/* P.  CPU hotplug, as far as a process has it: `cpu` got an explicit owner
 * (the caller); caches never prefilled on it are filled now. */
void memalloc_cpu_online(int cpu) __hidden;

void memalloc_before_fork(void) __hidden;
void memalloc_after_fork_parent(void) __hidden;
void memalloc_after_fork_child(void) __hidden;

#endif /* BPFMEM_KERNEL_INIT_H */
