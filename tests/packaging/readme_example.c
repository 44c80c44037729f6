/* SPDX-License-Identifier: MIT */
/* The usage example of README.md, verbatim from the #include on (packaging_readme_example
 * checks that); packaging_install builds it through pkg-config and runs it. */
#include <bpfmem.h>
#include <stdio.h>

struct elem {
	long key;
	char name[48];
};

int main(void)
{
	struct bpf_mem_alloc ma = {0};	/* embed it anywhere; zeroed = not initialised */

	if (bpf_mem_alloc_init(&ma, sizeof(struct elem), false))	/* fixed-size cache */
		return 1;
	struct elem *e = bpf_mem_cache_alloc(&ma);	/* also fine in a signal handler */
	if (!e)		/* out of memory (or re-entered from a handler) */
		return 1;
	e->key = 42;
	snprintf(e->name, sizeof(e->name), "virtual CPU %d", bpfmem_current_cpu());
	printf("%ld: %s\n", e->key, e->name);
	bpf_mem_cache_free_rcu(&ma, e);	/* not reused before an RCU grace period */
	bpfmem_rcu_barrier();		/* wait for it, then tear down */
	bpf_mem_alloc_destroy(&ma);
	return 0;
}
