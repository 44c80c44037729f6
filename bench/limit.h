/* SPDX-License-Identifier: MIT */
/*
 * "The limit": the cheapest allocator with the same interface shape as
 * bpf_mem_alloc/bpf_mem_free, against which every row is measured.
 */
#ifndef BPFMEM_BENCH_LIMIT_H
#define BPFMEM_BENCH_LIMIT_H

#include <stddef.h>

/* Preallocate `per_class` objects in every size class of this thread. */
void limit_prefill(int per_class);
void *limit_alloc(size_t size);
void limit_free(void *p);

#endif
