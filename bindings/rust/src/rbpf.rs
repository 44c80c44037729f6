// SPDX-License-Identifier: MIT
//! Helpers for rbpf: `bpf_obj_new` and `bpf_obj_drop` in rbpf's helper signature
//! `fn(u64, u64, u64, u64, u64) -> u64`, on one any-size allocator shared by every VM and
//! thread (the kernel's `bpf_global_ma`), and the memory ranges a host registers with
//! `register_allowed_memory`.
//!
//! ```text
//! bpfmem::rbpf::init().unwrap();
//! vm.register_helper(1, bpfmem::rbpf::bpf_obj_new).unwrap();
//! vm.register_helper(2, bpfmem::rbpf::bpf_obj_drop).unwrap();
//! for r in bpfmem::rbpf::allowed_memory() {
//!     vm.register_allowed_memory(r.clone());                  // rbpf 0.4: a Range<u64>
//!     vm.register_allowed_memory(&r.collect::<Vec<u64>>());   // rbpf 0.3: every address
//! }
//! ```
//!
//! rbpf's interpreter admits heap accesses only inside ranges registered beforehand, so a host
//! registers the chunk ranges after the allocator has grown to what its programs need (or
//! re-registers them between runs); ranges hold allocator headers too, which a program must
//! not write.  rbpf's JIT checks nothing.

use crate::{sys, Allocator, Errno};
use std::os::raw::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Helper numbers the example programs use (the same as examples/ubpf/bpfmem_ubpf.h).
pub const BPF_OBJ_NEW: u32 = 1;
pub const BPF_OBJ_DROP: u32 = 2;

static GLOBAL: AtomicPtr<Allocator> = AtomicPtr::new(std::ptr::null_mut());

/// Create the shared allocator (once; later calls do nothing).  Process context.
pub fn init() -> Result<(), Errno> {
    if !GLOBAL.load(Ordering::Acquire).is_null() {
        return Ok(());
    }
    let ma = Box::into_raw(Box::new(Allocator::new_any()?));
    if GLOBAL.compare_exchange(std::ptr::null_mut(), ma, Ordering::AcqRel, Ordering::Acquire).is_err() {
        // another thread won: ours was never shared
        drop(unsafe { Box::from_raw(ma) });
    }
    Ok(())
}

/// The shared allocator, once [`init`] ran.  It lives for the rest of the process.
pub fn allocator() -> Option<&'static Allocator> {
    unsafe { GLOBAL.load(Ordering::Acquire).as_ref() }
}

/// `bpf_obj_new(size)`: a zeroed object of `size` bytes (1..=4088), 0 on failure.
/// Async-signal-safe.
pub fn bpf_obj_new(size: u64, _r2: u64, _r3: u64, _r4: u64, _r5: u64) -> u64 {
    let ma = match allocator() {
        Some(ma) => ma,
        None => return 0,
    };
    if size == 0 || size > (sys::BPFMEM_ALLOC_SIZE_MAX - 8) as u64 {
        return 0;
    }
    let p = unsafe { sys::bpf_mem_alloc(ma.as_ptr(), size as usize) } as *mut u8;
    if p.is_null() {
        return 0;
    }
    unsafe { std::ptr::write_bytes(p, 0, size as usize) };
    p as u64
}

/// `bpf_obj_drop(ptr)`: 0, or `-EINVAL as u64` for a pointer that is not the start of an
/// object of the shared allocator (then nothing is freed).  Async-signal-safe.  As in the
/// kernel, a program must not drop an object twice.
pub fn bpf_obj_drop(ptr: u64, _r2: u64, _r3: u64, _r4: u64, _r5: u64) -> u64 {
    let einval = (-22i64) as u64;
    let ma = match allocator() {
        Some(ma) => ma,
        None => return einval,
    };
    let p = ptr as usize as *const u8;
    // the start of an object: its first byte is the caller's, the byte before it is the
    // allocator's header, which bpfmem_owns refuses
    if p.is_null() || !ma.owns(p, 1) || ma.owns(p.wrapping_sub(1), 1) {
        return einval;
    }
    unsafe { sys::bpf_mem_free(ma.as_ptr(), p as *mut c_void) };
    0
}

/// The shared allocator's chunk ranges, as rbpf's `register_allowed_memory` takes them.
pub fn allowed_memory() -> Vec<std::ops::Range<u64>> {
    allocator()
        .map(|ma| ma.chunks().into_iter().map(|r| r.start as u64..r.end as u64).collect())
        .unwrap_or_default()
}
