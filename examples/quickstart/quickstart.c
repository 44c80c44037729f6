#include <bpfmem.h>
#include <stdio.h>
int main(void)
{
	struct bpf_mem_alloc ma;
	int err = bpf_mem_alloc_init(&ma, 0, false);
	printf("init %d nr_cpus %d\n", err, bpfmem_nr_cpus());
	void *p = bpf_mem_alloc(&ma, 100);
	printf("p %p cpu %d\n", p, bpfmem_current_cpu());
	bpf_mem_free(&ma, p);
	void *q = bpf_mem_alloc(&ma, 100);
	printf("q %p same %d\n", q, p == q);
	bpf_mem_free_rcu(&ma, q);
	bpf_mem_alloc_destroy(&ma);
	return 0;
}
