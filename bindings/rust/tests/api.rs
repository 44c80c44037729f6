// SPDX-License-Identifier: MIT
//! The safe layer and the rbpf helpers against the real library: typed objects, any-size
//! blocks, ownership, chunk ranges, RCU guards, virtual CPUs, several threads, a signal
//! handler.
use bpfmem::{attach, current_cpu, rbpf, rcu_barrier, rcu_read_lock, Allocator, Cache};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    x: u64,
    y: u64,
    tag: u32,
}

const EINVAL: u64 = (-22i64) as u64;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn allocator_and_cache_are_send_and_sync() {
    assert_send_sync::<Allocator>();
    assert_send_sync::<Cache<Point>>();
}

#[test]
fn typed_object_holds_its_value_and_is_owned_until_dropped() {
    let cache: Cache<Point> = Cache::new().unwrap();
    let mut p = cache.alloc(Point { x: 1, y: 2, tag: 3 }).expect("prefilled cache");
    assert_eq!(*p, Point { x: 1, y: 2, tag: 3 });
    p.x = 10;
    assert_eq!(p.x, 10);
    let addr = p.as_ptr() as *const u8;
    assert!(cache.allocator().owns(addr, std::mem::size_of::<Point>()));
    assert!(!cache.allocator().owns(addr, std::mem::size_of::<Point>() + 1));
    assert_eq!(cache.allocator().stats(0).unwrap().unit_size as usize, std::mem::size_of::<Point>() + 8);
    drop(p);
    // freed into the cache: still the allocator's (type-stable) memory
    assert!(cache.allocator().owns(addr, 8));
}

#[test]
fn cache_refuses_types_aligned_beyond_8() {
    #[derive(Clone, Copy)]
    #[repr(align(16))]
    struct Wide(u8);
    assert_eq!(Cache::<Wide>::new().err(), Some(bpfmem::Errno(22)));
}

#[test]
fn free_rcu_object_stays_owned_while_a_reader_is_inside() {
    let cache: Cache<u64> = Cache::new().unwrap();
    let obj = cache.alloc(7).unwrap();
    let addr = obj.as_ptr() as *const u8;
    {
        let _guard = rcu_read_lock();
        obj.free_rcu();
        assert!(cache.allocator().owns(addr, 8));
        assert_eq!(unsafe { *(addr as *const u64) }, 7);
    }
    rcu_barrier();
}

#[test]
fn any_size_blocks_of_every_size_class() {
    let ma = Allocator::new_any().unwrap();
    for &size in &[1usize, 8, 24, 56, 88, 120, 184, 248, 500, 1000, 2040, 4088] {
        let mut b = ma.alloc_bytes(size).or_else(|| {
            rcu_barrier(); // a size class's first use may wait for its refill
            ma.alloc_bytes(size)
        });
        let b = b.as_mut().expect("an object after the refill");
        b.as_mut_slice().iter_mut().for_each(|x| *x = 0x5a);
        assert!(ma.owns(b.as_ptr(), size));
        assert!(!ma.owns(b.as_ptr().wrapping_sub(1), 1));
    }
    assert!(ma.alloc_bytes(4089).is_none());
}

#[test]
fn owns_refuses_memory_of_others() {
    let a = Allocator::new_fixed(64).unwrap();
    let b = Allocator::new_fixed(64).unwrap();
    let on_stack = 0u64;
    let boxed = Box::new(0u64);
    let x = a.alloc_bytes(64).unwrap();
    assert!(a.owns(x.as_ptr(), 64));
    assert!(!b.owns(x.as_ptr(), 1));
    assert!(!a.owns(&on_stack as *const u64 as *const u8, 8));
    assert!(!a.owns(&*boxed as *const u64 as *const u8, 8));
    assert!(!a.owns(std::ptr::null(), 8));
}

#[test]
fn chunks_cover_every_object_and_only_the_allocators() {
    let a = Allocator::new_fixed(200).unwrap();
    let other = Allocator::new_fixed(200).unwrap();
    let objs: Vec<_> = (0..3).filter_map(|_| a.alloc_bytes(200)).collect();
    assert!(!objs.is_empty());
    let chunks = a.chunks();
    assert_eq!(chunks.len(), 1);
    let foreign = other.alloc_bytes(200).unwrap();
    for o in &objs {
        let p = o.as_ptr() as usize;
        assert!(chunks.iter().any(|r| r.start <= p && p + 200 <= r.end));
    }
    let f = foreign.as_ptr() as usize;
    assert!(!chunks.iter().any(|r| r.contains(&f)));
}

#[test]
fn attach_guard_owns_a_virtual_cpu_until_dropped() {
    std::thread::spawn(|| {
        assert_eq!(current_cpu(), None);
        {
            let g = attach(40, false).unwrap();
            assert_eq!(g.cpu(), 40);
            assert_eq!(current_cpu(), Some(40));
        }
        assert_eq!(current_cpu(), None);
        assert_eq!(attach(bpfmem::nr_cpus(), false).err(), Some(bpfmem::Errno(22)));
    })
    .join()
    .unwrap();
}

#[test]
fn rbpf_helpers_allocate_zeroed_objects_inside_the_allowed_ranges() {
    rbpf::init().unwrap();
    let p = rbpf::bpf_obj_new(56, 0, 0, 0, 0);
    assert_ne!(p, 0);
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, 56) };
    assert!(bytes.iter().all(|&b| b == 0));
    assert!(rbpf::allowed_memory().iter().any(|r| r.start <= p && p + 56 <= r.end));
    assert_eq!(rbpf::bpf_obj_new(0, 0, 0, 0, 0), 0);
    assert_eq!(rbpf::bpf_obj_new(4089, 0, 0, 0, 0), 0);
    assert_eq!(rbpf::bpf_obj_drop(p + 8, 0, 0, 0, 0), EINVAL);
    assert_eq!(rbpf::bpf_obj_drop(0, 0, 0, 0, 0), EINVAL);
    assert_eq!(rbpf::bpf_obj_drop(p, 0, 0, 0, 0), 0);
}

#[test]
fn rbpf_helpers_from_several_threads_each_on_its_own_virtual_cpu() {
    rbpf::init().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let _cpu = attach(20 + i, false).unwrap();
                let (mut ok, mut empty) = (0u64, 0u64);
                for n in 0..20000u64 {
                    let size = 1 + (n * 37) % 4088;
                    let p = rbpf::bpf_obj_new(size, 0, 0, 0, 0);
                    if p == 0 {
                        empty += 1; // a cache waiting for its refill
                        continue;
                    }
                    unsafe { *((p + size - 1) as *mut u8) = n as u8 };
                    assert!(rbpf::allocator().unwrap().owns(p as *const u8, size as usize));
                    assert_eq!(rbpf::bpf_obj_drop(p, 0, 0, 0, 0), 0);
                    ok += 1;
                }
                (ok, empty)
            })
        })
        .collect();
    for t in threads {
        let (ok, empty) = t.join().unwrap();
        assert_eq!(ok + empty, 20000);
        assert!(ok > 19000);
    }
}

// ---- a signal handler, through raw declarations of the C library (no libc crate) ----

#[repr(C)]
struct SigAction {
    sa_handler: usize,
    sa_mask: [u64; 16],
    sa_flags: i32,
    sa_restorer: usize,
}

extern "C" {
    fn sigaction(sig: i32, act: *const SigAction, old: *mut SigAction) -> i32;
    fn raise(sig: i32) -> i32;
}

const SIGUSR1: i32 = 10;
static HANDLER: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_signal(_sig: i32) {
    // 1: allocated, checked and freed; 2: an empty cache (a valid answer in a handler)
    let p = rbpf::bpf_obj_new(48, 0, 0, 0, 0);
    let r = if p == 0 {
        2
    } else if rbpf::allocator().unwrap().owns(p as *const u8, 48) && rbpf::bpf_obj_drop(p, 0, 0, 0, 0) == 0 {
        1
    } else {
        3
    };
    HANDLER.store(r, Ordering::SeqCst);
}

#[test]
fn rbpf_helpers_run_in_a_signal_handler() {
    rbpf::init().unwrap();
    std::thread::spawn(|| {
        let _cpu = attach(30, false).unwrap();
        // warm this CPU's cache so the handler finds an object
        let warm = rbpf::bpf_obj_new(48, 0, 0, 0, 0);
        assert_eq!(rbpf::bpf_obj_drop(warm, 0, 0, 0, 0), 0);
        let act = SigAction { sa_handler: on_signal as *const () as usize, sa_mask: [0; 16], sa_flags: 0, sa_restorer: 0 };
        assert_eq!(unsafe { sigaction(SIGUSR1, &act, std::ptr::null_mut()) }, 0);
        assert_eq!(unsafe { raise(SIGUSR1) }, 0);
        assert_eq!(HANDLER.load(Ordering::SeqCst), 1);
    })
    .join()
    .unwrap();
}
