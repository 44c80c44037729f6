// SPDX-License-Identifier: MIT
//! The C API of `<bpfmem.h>`, declaration for declaration.  Context rules (AS: may run in a
//! signal handler; P: process context only) are those of the header.

use std::os::raw::{c_char, c_int, c_uint, c_ulong, c_void};

/// `struct bpf_mem_alloc`: a complete type in C, embedded by users.  Zeroed = not
/// initialised.  Must not move while initialised (the library links it into a registry).
#[repr(C)]
pub struct bpf_mem_alloc {
    pub caches: *mut c_void,
    pub cache: *mut c_void,
    pub objcg: *mut bpfmem_objcg,
    pub percpu: bool,
    pub magic: c_uint,
    pub next_ma: *mut bpf_mem_alloc,
    pub pprev_ma: *mut *mut bpf_mem_alloc,
}

/// `struct bpfmem_objcg`: opaque.
#[repr(C)]
pub struct bpfmem_objcg {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct bpfmem_cache_stats {
    pub sz: usize,
    pub unit_size: c_uint,
    pub low_watermark: c_int,
    pub high_watermark: c_int,
    pub batch: c_int,
    pub cpus_used: c_uint,
    pub cached: c_ulong,
    pub backend_allocs: c_ulong,
    pub backend_frees: c_ulong,
    pub refills: c_ulong,
    pub trims: c_ulong,
    pub inline_refills: c_ulong,
}

pub const BPFMEM_GFP_NOWAIT: c_uint = 0x0;
pub const BPFMEM_GFP_KERNEL: c_uint = 0x1;
pub const BPFMEM_ALLOC_SIZE_MAX: usize = 4096;
pub const BPFMEM_ATTACH_PIN: c_uint = 0x1;

pub type bpfmem_warn_fn = Option<unsafe extern "C" fn(msg: *const c_char, arg: *mut c_void)>;
pub type bpfmem_chunk_fn = Option<unsafe extern "C" fn(start: *mut c_void, len: usize, arg: *mut c_void)>;

extern "C" {
    pub fn bpf_mem_alloc_init(ma: *mut bpf_mem_alloc, size: c_int, percpu: bool) -> c_int;
    pub fn bpf_mem_alloc_percpu_init(ma: *mut bpf_mem_alloc, objcg: *mut bpfmem_objcg) -> c_int;
    pub fn bpf_mem_alloc_percpu_unit_init(ma: *mut bpf_mem_alloc, size: c_int) -> c_int;
    pub fn bpf_mem_alloc_destroy(ma: *mut bpf_mem_alloc);
    pub fn bpf_mem_alloc_check_size(percpu: bool, size: usize) -> c_int;

    pub fn bpf_mem_alloc(ma: *mut bpf_mem_alloc, size: usize) -> *mut c_void;
    pub fn bpf_mem_free(ma: *mut bpf_mem_alloc, ptr: *mut c_void);
    pub fn bpf_mem_free_rcu(ma: *mut bpf_mem_alloc, ptr: *mut c_void);

    pub fn bpf_mem_cache_alloc(ma: *mut bpf_mem_alloc) -> *mut c_void;
    pub fn bpf_mem_cache_free(ma: *mut bpf_mem_alloc, ptr: *mut c_void);
    pub fn bpf_mem_cache_free_rcu(ma: *mut bpf_mem_alloc, ptr: *mut c_void);
    pub fn bpf_mem_cache_raw_free(ptr: *mut c_void);
    pub fn bpf_mem_cache_alloc_flags(ma: *mut bpf_mem_alloc, gfp: c_uint) -> *mut c_void;

    pub fn bpfmem_nr_cpus() -> c_int;
    pub fn bpfmem_thread_attach(cpu: c_int, flags: c_uint) -> c_int;
    pub fn bpfmem_thread_detach();
    pub fn bpfmem_current_cpu() -> c_int;
    pub fn bpfmem_per_cpu_ptr(pptr: *mut c_void, cpu: c_int) -> *mut c_void;
    pub fn bpfmem_this_cpu_ptr(pptr: *mut c_void) -> *mut c_void;

    pub fn bpfmem_rcu_read_lock();
    pub fn bpfmem_rcu_read_unlock();
    pub fn bpfmem_rcu_read_lock_trace();
    pub fn bpfmem_rcu_read_unlock_trace();
    pub fn bpfmem_synchronize_rcu();
    pub fn bpfmem_synchronize_rcu_trace();
    pub fn bpfmem_rcu_barrier();

    pub fn bpfmem_objcg_create(limit_bytes: usize) -> *mut bpfmem_objcg;
    pub fn bpfmem_objcg_put(cg: *mut bpfmem_objcg);
    pub fn bpfmem_objcg_usage(cg: *const bpfmem_objcg) -> usize;
    pub fn bpfmem_objcg_set_current(cg: *mut bpfmem_objcg) -> *mut bpfmem_objcg;

    pub fn bpfmem_set_warn_handler(f: bpfmem_warn_fn, arg: *mut c_void);

    pub fn bpfmem_owns(ma: *const bpf_mem_alloc, addr: *const c_void, len: usize) -> bool;
    pub fn bpfmem_for_each_chunk(ma: *const bpf_mem_alloc, f: bpfmem_chunk_fn, arg: *mut c_void) -> c_int;

    pub fn bpfmem_nr_size_classes(ma: *const bpf_mem_alloc) -> c_int;
    pub fn bpfmem_cache_stats(ma: *const bpf_mem_alloc, idx: c_int, st: *mut bpfmem_cache_stats) -> c_int;
}
