/* SPDX-License-Identifier: MIT */
/* C entry points into abseil's LowLevelAlloc (absl_shim.cc). */
#ifndef BPFMEM_BENCH_ABSL_SHIM_H
#define BPFMEM_BENCH_ABSL_SHIM_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

bool bench_absl_init(void);
void *bench_absl_alloc(size_t size);
void bench_absl_free(void *p);

#ifdef __cplusplus
}
#endif

#endif
