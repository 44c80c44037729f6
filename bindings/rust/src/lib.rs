// SPDX-License-Identifier: MIT
//! libbpfmem from Rust: the C API in [`sys`], and a safe layer over it.
//!
//! * [`Allocator`]: an any-size or fixed-size `bpf_mem_alloc`, `Send + Sync`, destroyed on drop.
//! * [`Cache<T>`]: a fixed-size allocator of `T`s whose [`Obj`] handles free their object when
//!   dropped (or after an RCU grace period with [`Obj::free_rcu`]); the safe API cannot free
//!   an object twice.
//! * [`rcu_read_lock`] and [`rcu_read_lock_trace`] return RAII guards; [`attach`] owns a
//!   virtual CPU until its guard drops.
//! * [`rbpf`]: `bpf_obj_new` / `bpf_obj_drop` in rbpf's helper signature, and the chunk ranges
//!   an rbpf host registers with `register_allowed_memory`.
//!
//! Allocation and free are async-signal-safe in C and stay so here: they allocate nothing on
//! the Rust side.
#![allow(non_camel_case_types)]

pub mod rbpf;
pub mod sys;

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::mem::{align_of, size_of, MaybeUninit};
use std::ops::{Deref, DerefMut};
use std::os::raw::c_void;
use std::ptr::NonNull;

/// A negative errno from the C API, as a positive number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

fn check(ret: i32) -> Result<(), Errno> {
    if ret < 0 {
        Err(Errno(-ret))
    } else {
        Ok(())
    }
}

/// A `bpf_mem_alloc`.  Boxed so that it never moves while initialised, as the C library
/// requires; destroyed when dropped (objects still allocated are reported as leaked by the
/// library's warning hook).
pub struct Allocator {
    ma: Box<UnsafeCell<sys::bpf_mem_alloc>>,
    fixed: usize,
}

// The C allocator is made for concurrent use from every thread (and signal handlers).
unsafe impl Send for Allocator {}
unsafe impl Sync for Allocator {}

impl Allocator {
    fn init(size: usize) -> Result<Allocator, Errno> {
        if size > (1 << 30) {
            return Err(Errno(22));
        }
        // zeroed = not initialised, as bpf_mem_alloc_init expects
        let ma = Box::new(UnsafeCell::new(unsafe { MaybeUninit::zeroed().assume_init() }));
        check(unsafe { sys::bpf_mem_alloc_init(ma.get(), size as i32, false) })?;
        Ok(Allocator { ma, fixed: size })
    }

    /// An any-size allocator: 1 to 4088 bytes per object, 11 size classes.
    pub fn new_any() -> Result<Allocator, Errno> {
        Allocator::init(0)
    }

    /// A fixed-size cache of `size`-byte objects (1 byte to 1 GiB).
    pub fn new_fixed(size: usize) -> Result<Allocator, Errno> {
        if size == 0 {
            return Err(Errno(22));
        }
        Allocator::init(size)
    }

    /// The C allocator, for the functions of [`sys`].
    pub fn as_ptr(&self) -> *mut sys::bpf_mem_alloc {
        self.ma.get()
    }

    /// Object size of a fixed-size allocator, 0 for an any-size one.
    pub fn object_size(&self) -> usize {
        self.fixed
    }

    /// An object of `size` bytes (any-size allocators; NULL-free: `None` when the cache is
    /// empty, as in the kernel).  Its contents are those of the last user.
    pub fn alloc_bytes(&self, size: usize) -> Option<Block<'_>> {
        let p = if self.fixed == 0 {
            unsafe { sys::bpf_mem_alloc(self.as_ptr(), size) }
        } else if size <= self.fixed {
            unsafe { sys::bpf_mem_cache_alloc(self.as_ptr()) }
        } else {
            std::ptr::null_mut()
        };
        NonNull::new(p as *mut u8).map(|ptr| Block { ma: self, ptr, len: size })
    }

    /// `bpfmem_owns`: does `[addr, addr + len)` lie inside one object of this allocator
    /// (handed out, cached or waiting for a grace period)?  Never dereferences `addr`.
    pub fn owns(&self, addr: *const u8, len: usize) -> bool {
        unsafe { sys::bpfmem_owns(self.as_ptr(), addr as *const c_void, len) }
    }

    /// The allocator's backend chunks as `[start, end)` address ranges: memory that holds
    /// only this allocator's objects and their 8-byte headers.  Process context.
    pub fn chunks(&self) -> Vec<std::ops::Range<usize>> {
        unsafe extern "C" fn collect(start: *mut c_void, len: usize, arg: *mut c_void) {
            let v = &mut *(arg as *mut Vec<std::ops::Range<usize>>);
            v.push(start as usize..start as usize + len);
        }
        let mut v: Vec<std::ops::Range<usize>> = Vec::new();
        unsafe {
            sys::bpfmem_for_each_chunk(self.as_ptr(), Some(collect), &mut v as *mut _ as *mut c_void);
        }
        v
    }

    /// Statistics of size class `idx` (0 for a fixed-size allocator).
    pub fn stats(&self, idx: usize) -> Result<sys::bpfmem_cache_stats, Errno> {
        let mut st = sys::bpfmem_cache_stats { sz: size_of::<sys::bpfmem_cache_stats>(), ..Default::default() };
        check(unsafe { sys::bpfmem_cache_stats(self.as_ptr(), idx as i32, &mut st) })?;
        Ok(st)
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        unsafe { sys::bpf_mem_alloc_destroy(self.as_ptr()) }
    }
}

/// An object of an [`Allocator`]: freed when dropped.
pub struct Block<'a> {
    ma: &'a Allocator,
    ptr: NonNull<u8>,
    len: usize,
}

impl<'a> Block<'a> {
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_slice(&self) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Free after an RCU grace period: readers inside `rcu_read_lock()` sections that still
    /// hold the address keep reading valid (type-stable) memory.
    pub fn free_rcu(self) {
        let (ma, p) = (self.ma, self.ptr.as_ptr());
        std::mem::forget(self);
        unsafe {
            if ma.fixed == 0 {
                sys::bpf_mem_free_rcu(ma.as_ptr(), p as *mut c_void)
            } else {
                sys::bpf_mem_cache_free_rcu(ma.as_ptr(), p as *mut c_void)
            }
        }
    }
}

impl Drop for Block<'_> {
    fn drop(&mut self) {
        unsafe {
            if self.ma.fixed == 0 {
                sys::bpf_mem_free(self.ma.as_ptr(), self.ptr.as_ptr() as *mut c_void)
            } else {
                sys::bpf_mem_cache_free(self.ma.as_ptr(), self.ptr.as_ptr() as *mut c_void)
            }
        }
    }
}

/// A fixed-size allocator of `T`.  `T` must need no more than 8-byte alignment (the
/// library's guarantee) and must not need dropping: objects are type-stable memory that RCU
/// readers may still look at after a free, as in the kernel.
pub struct Cache<T: Copy> {
    ma: Allocator,
    _t: PhantomData<fn(T) -> T>,
}

impl<T: Copy> Cache<T> {
    pub fn new() -> Result<Cache<T>, Errno> {
        if align_of::<T>() > 8 {
            return Err(Errno(22));
        }
        Ok(Cache { ma: Allocator::new_fixed(size_of::<T>().max(1))?, _t: PhantomData })
    }

    /// A new object holding `value`; `None` when the cache is empty (retry after its refill).
    pub fn alloc(&self, value: T) -> Option<Obj<'_, T>> {
        let p = unsafe { sys::bpf_mem_cache_alloc(self.ma.as_ptr()) } as *mut T;
        let ptr = NonNull::new(p)?;
        unsafe { ptr.as_ptr().write(value) };
        Some(Obj { cache: self, ptr })
    }

    /// The allocator underneath (for `owns`, `chunks`, `stats`).
    pub fn allocator(&self) -> &Allocator {
        &self.ma
    }
}

/// An object of a [`Cache<T>`], owned: freed exactly once, when dropped or by `free_rcu`.
pub struct Obj<'a, T: Copy> {
    cache: &'a Cache<T>,
    ptr: NonNull<T>,
}

// An Obj is an owned T in memory any thread may free to.
unsafe impl<T: Copy + Send> Send for Obj<'_, T> {}
unsafe impl<T: Copy + Sync> Sync for Obj<'_, T> {}

impl<'a, T: Copy> Obj<'a, T> {
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// Free after an RCU grace period (see [`Block::free_rcu`]).
    pub fn free_rcu(self) {
        let (ma, p) = (self.cache.ma.as_ptr(), self.ptr.as_ptr());
        std::mem::forget(self);
        unsafe { sys::bpf_mem_cache_free_rcu(ma, p as *mut c_void) }
    }
}

impl<T: Copy> Deref for Obj<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Copy> DerefMut for Obj<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: Copy> Drop for Obj<'_, T> {
    fn drop(&mut self) {
        unsafe { sys::bpf_mem_cache_free(self.cache.ma.as_ptr(), self.ptr.as_ptr() as *mut c_void) }
    }
}

/// An RCU read-side section, ended when dropped.  Stays on its thread.
pub struct RcuReadGuard {
    trace: bool,
    _not_send: PhantomData<*const ()>,
}

/// `bpfmem_rcu_read_lock()` until the guard drops.  Nestable.
pub fn rcu_read_lock() -> RcuReadGuard {
    unsafe { sys::bpfmem_rcu_read_lock() };
    RcuReadGuard { trace: false, _not_send: PhantomData }
}

/// `bpfmem_rcu_read_lock_trace()` (RCU tasks trace, sleepable readers) until the guard drops.
pub fn rcu_read_lock_trace() -> RcuReadGuard {
    unsafe { sys::bpfmem_rcu_read_lock_trace() };
    RcuReadGuard { trace: true, _not_send: PhantomData }
}

impl Drop for RcuReadGuard {
    fn drop(&mut self) {
        unsafe {
            if self.trace {
                sys::bpfmem_rcu_read_unlock_trace()
            } else {
                sys::bpfmem_rcu_read_unlock()
            }
        }
    }
}

/// Wait for every RCU callback the library queued so far (objects freed with `free_rcu`
/// before the call have been recycled or returned).
pub fn rcu_barrier() {
    unsafe { sys::bpfmem_rcu_barrier() }
}

pub fn synchronize_rcu() {
    unsafe { sys::bpfmem_synchronize_rcu() }
}

/// Ownership of a virtual CPU by the calling thread, released when dropped.
pub struct CpuGuard {
    cpu: i32,
    _not_send: PhantomData<*const ()>,
}

impl CpuGuard {
    pub fn cpu(&self) -> i32 {
        self.cpu
    }
}

/// Own virtual CPU `cpu` (and with `pin`, run on real CPU `cpu % online`).
pub fn attach(cpu: i32, pin: bool) -> Result<CpuGuard, Errno> {
    let flags = if pin { sys::BPFMEM_ATTACH_PIN } else { 0 };
    check(unsafe { sys::bpfmem_thread_attach(cpu, flags) })?;
    Ok(CpuGuard { cpu, _not_send: PhantomData })
}

impl Drop for CpuGuard {
    fn drop(&mut self) {
        unsafe { sys::bpfmem_thread_detach() }
    }
}

/// The calling thread's virtual CPU, if it has one.
pub fn current_cpu() -> Option<i32> {
    let cpu = unsafe { sys::bpfmem_current_cpu() };
    if cpu < 0 {
        None
    } else {
        Some(cpu)
    }
}

pub fn nr_cpus() -> i32 {
    unsafe { sys::bpfmem_nr_cpus() }
}
