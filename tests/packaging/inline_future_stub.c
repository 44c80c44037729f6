/* SPDX-License-Identifier: MIT */
/*
 * Link-time stand-in for a future libbpfmem.so.0 whose fast-path layout is
 * the next BPFMEM_FAST_ABI: what inline_consumer.c uses, and that layout's
 * thread variable and class table (FUTURE_THIS_CPU, FUTURE_CLASS_OFF, named
 * by the build).  Never loaded: at run time the program gets this tree's
 * library.
 */
#include <stdbool.h>
#include <stddef.h>

struct bpf_mem_alloc;

__thread long FUTURE_THIS_CPU __attribute__((tls_model("initial-exec")));
const unsigned short FUTURE_CLASS_OFF[4096 / 8 + 1];

int bpfmem_thread_attach(int cpu, unsigned int flags)
{
	(void)cpu;
	(void)flags;
	return -1;
}

int bpf_mem_alloc_init(struct bpf_mem_alloc *ma, int size, bool percpu)
{
	(void)ma;
	(void)size;
	(void)percpu;
	return -1;
}

void bpf_mem_alloc_destroy(struct bpf_mem_alloc *ma)
{
	(void)ma;
}

void *bpf_mem_cache_alloc(struct bpf_mem_alloc *ma)
{
	(void)ma;
	return NULL;
}

void bpf_mem_cache_free(struct bpf_mem_alloc *ma, void *ptr)
{
	(void)ma;
	(void)ptr;
}

void *bpf_mem_alloc(struct bpf_mem_alloc *ma, size_t size)
{
	(void)ma;
	(void)size;
	return NULL;
}

void bpf_mem_free(struct bpf_mem_alloc *ma, void *ptr)
{
	(void)ma;
	(void)ptr;
}
