/* SPDX-License-Identifier: MIT */
/* Fork hooks of the allocator core, called by the library's fork handlers. */
#ifndef BPFMEM_KERNEL_INIT_H
#define BPFMEM_KERNEL_INIT_H

#include "compiler.h"

void memalloc_before_fork(void) __hidden;
void memalloc_after_fork_parent(void) __hidden;
void memalloc_after_fork_child(void) __hidden;

#endif /* BPFMEM_KERNEL_INIT_H */
