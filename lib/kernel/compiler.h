/* SPDX-License-Identifier: MIT */
/*
 * Compiler helpers with the kernel's names: likely/unlikely, READ_ONCE and
 * WRITE_ONCE (relaxed atomic accesses, so TSan sees intended races),
 * container_of, and the visibility/TLS attributes the library relies on.
 */
#ifndef BPFMEM_KERNEL_COMPILER_H
#define BPFMEM_KERNEL_COMPILER_H

#include <stdatomic.h>
#include <stddef.h>

#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)
#ifndef __always_inline
#define __always_inline	inline __attribute__((always_inline))
#endif
#define __noinline	__attribute__((noinline))
#define __cold		__attribute__((cold))
#define __hidden	__attribute__((visibility("hidden")))
#define __public	__attribute__((visibility("default")))
/* Entry points whose fast path is a few dozen instructions: each starts a
 * cache line of its own, so that how fast they run does not move with the
 * size of the code laid out before them (measured: 10 % either way). */
#define __fastpath	__attribute__((aligned(64)))
#define ____cacheline_aligned __attribute__((aligned(SMP_CACHE_BYTES)))

/*
 * initial-exec TLS is a plain thread-pointer-relative access (%fs on x86-64,
 * tpidr_el0 on arm64): no __tls_get_addr call, no lazy allocation, so it is
 * safe in signal handlers.  It needs static TLS
 * space, which glibc has for libraries loaded at start-up (and a little
 * for dlopen); the library keeps its TLS to a few words for that reason.
 */
#define __tls_ie	__thread __attribute__((tls_model("initial-exec")))

/*
 * The architecture's L1 cache-line size, which keeps per-CPU data of
 * different virtual CPUs apart (false sharing), with the kernel's values
 * (L1_CACHE_BYTES): 64 on x86-64 and on arm64, whose common cores (Cortex-A,
 * Neoverse) have 64-byte lines; cores with 128-byte lines (Apple M) may then
 * share a line between two neighbours, a cost in speed, not in correctness.
 * 128 on 64-bit POWER, 256 on s390x.
 */
#if defined(__powerpc64__)
#define SMP_CACHE_BYTES 128
#elif defined(__s390x__)
#define SMP_CACHE_BYTES 256
#else
#define SMP_CACHE_BYTES 64
#endif

#define READ_ONCE(x)		__atomic_load_n(&(x), __ATOMIC_RELAXED)
#define WRITE_ONCE(x, v)	__atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* Orders accesses against a signal handler on this thread: a compiler
 * barrier, no fence instruction. */
#define barrier()	atomic_signal_fence(memory_order_seq_cst)

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#define max(a, b)	((a) > (b) ? (a) : (b))
#define min(a, b)	((a) < (b) ? (a) : (b))
#define ALIGN(x, a)	(((x) + (a) - 1) & ~((size_t)(a) - 1))
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

#endif /* BPFMEM_KERNEL_COMPILER_H */
