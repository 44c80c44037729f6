/* SPDX-License-Identifier: MIT */
/*
 * A program built with BPFMEM_INLINE against the shared library.  Built
 * twice: against include/bpfmem.h it must run and print "inline consumer:
 * ok"; against a copy whose BPFMEM_FAST_ABI is another (as if built with a
 * future header) the dynamic linker must refuse to start it.
 */
#define BPFMEM_INLINE
#include <bpfmem.h>

#include <stdio.h>

int main(void)
{
	static struct bpf_mem_alloc fixed, any;
	void *a, *b;
	int bad = 0;

	if (bpfmem_thread_attach(0, 0) || bpf_mem_alloc_init(&fixed, 64, false) ||
	    bpf_mem_alloc_init(&any, 0, false))
		return 2;
	for (int i = 0; i < 1000; i++) {
		a = bpf_mem_cache_alloc(&fixed);
		if (a)
			bpf_mem_cache_free(&fixed, a);
		b = bpf_mem_cache_alloc(&fixed);
		bad += a && b != a;	/* last in, first out */
		if (b)
			bpf_mem_cache_free(&fixed, b);
		a = bpf_mem_alloc(&any, (size_t)(i % 4000) + 1);
		if (a)
			bpf_mem_free(&any, a);
		b = bpf_mem_alloc(&any, (size_t)(i % 4000) + 1);
		bad += a && b != a;
		if (b)
			bpf_mem_free(&any, b);
	}
	bpf_mem_alloc_destroy(&fixed);
	bpf_mem_alloc_destroy(&any);
	printf("inline consumer (BPFMEM_FAST_ABI %d): %s\n", BPFMEM_FAST_ABI, bad ? "FAILED" : "ok");
	return bad != 0;
}
