/* SPDX-License-Identifier: MIT */
/* <bpfmem.h> alone, compiled as C11, C17 and C++17 with every warning an error
 * (tests/packaging/CMakeLists.txt): each declaration is used once, so a type the
 * header does not spell portably shows up here. */
#include <bpfmem.h>

#if BPFMEM_VERSION_MAJOR < 0 || BPFMEM_VERSION_MINOR < 0 || BPFMEM_VERSION_PATCH < 0
#error "BPFMEM_VERSION_* must be non-negative integers usable in #if"
#endif

static void warn(const char *msg, void *arg)
{
	(void)msg;
	(void)arg;
}

static void chunk(void *start, size_t len, void *arg)
{
	(void)start;
	(void)len;
	(void)arg;
}

int header_std_use(struct bpf_mem_alloc *ma, struct bpfmem_objcg *cg);

int header_std_use(struct bpf_mem_alloc *ma, struct bpfmem_objcg *cg)
{
	struct bpfmem_cache_stats st;
	void *p;

	st.sz = sizeof(st);
	bpfmem_set_warn_handler(warn, NULL);
	if (bpf_mem_alloc_init(ma, 0, false) || bpf_mem_alloc_check_size(true, BPFMEM_ALLOC_SIZE_MAX))
		return -1;
	p = bpf_mem_alloc(ma, 16);
	if (!bpfmem_owns(ma, p, 16) || bpfmem_for_each_chunk(ma, chunk, NULL) < 0)
		return -1;
	bpf_mem_free(ma, p);
	bpf_mem_free_rcu(ma, bpf_mem_alloc(ma, 16));
	bpf_mem_cache_free(ma, bpf_mem_cache_alloc(ma));
	bpf_mem_cache_free_rcu(ma, bpf_mem_cache_alloc_flags(ma, BPFMEM_GFP_KERNEL));
	bpf_mem_cache_raw_free(bpf_mem_cache_alloc_flags(ma, BPFMEM_GFP_NOWAIT));
	bpf_mem_alloc_destroy(ma);
	if (bpf_mem_alloc_percpu_init(ma, cg) || bpf_mem_alloc_percpu_unit_init(ma, 8))
		return -1;
	if (bpfmem_thread_attach(bpfmem_nr_cpus() - 1, BPFMEM_ATTACH_PIN))
		return -1;
	p = bpfmem_this_cpu_ptr(bpfmem_per_cpu_ptr(p, bpfmem_current_cpu()));
	bpfmem_thread_detach();
	bpfmem_rcu_read_lock();
	bpfmem_rcu_read_unlock();
	bpfmem_rcu_read_lock_trace();
	bpfmem_rcu_read_unlock_trace();
	bpfmem_synchronize_rcu();
	bpfmem_synchronize_rcu_trace();
	bpfmem_rcu_barrier();
	cg = bpfmem_objcg_set_current(bpfmem_objcg_create(4096));
	bpfmem_objcg_put(bpfmem_objcg_set_current(cg));
	return (int)bpfmem_objcg_usage(cg) + bpfmem_nr_size_classes(ma) +
	       bpfmem_cache_stats(ma, 0, &st) + (p != NULL) + (bpfmem_version()[0] == '0');
}
