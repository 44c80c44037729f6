// SPDX-License-Identifier: MIT
//! What an rbpf host does with libbpfmem: register `bpf_obj_new` / `bpf_obj_drop` (rbpf's
//! helper signature) and admit the allocator's chunks with `register_allowed_memory`.  rbpf
//! itself is not packaged in Debian, so this prints the calls a host makes and runs the
//! helpers as rbpf's interpreter would call them.
use bpfmem::rbpf;

type Helper = fn(u64, u64, u64, u64, u64) -> u64;

fn main() {
    rbpf::init().expect("allocator");
    let helpers: [(u32, &str, Helper); 2] = [
        (rbpf::BPF_OBJ_NEW, "bpf_obj_new", rbpf::bpf_obj_new),
        (rbpf::BPF_OBJ_DROP, "bpf_obj_drop", rbpf::bpf_obj_drop),
    ];
    for (idx, name, _) in &helpers {
        println!("vm.register_helper({}, bpfmem::rbpf::{})", idx, name);
    }
    // a program run: a few objects, then the ranges that admit them
    let objs: Vec<u64> = (0..4).map(|i| (helpers[0].2)(64 * (i + 1), 0, 0, 0, 0)).collect();
    for r in rbpf::allowed_memory() {
        println!("vm.register_allowed_memory({:#x}..{:#x})  // {} KiB", r.start, r.end, (r.end - r.start) / 1024);
    }
    for (i, p) in objs.iter().enumerate() {
        let inside = rbpf::allowed_memory().iter().any(|r| r.start <= *p && *p + 64 * (i as u64 + 1) <= r.end);
        println!("object {} at {:#x}: inside a registered range: {}", i, p, inside);
        assert!(inside);
        assert_eq!((helpers[1].2)(*p, 0, 0, 0, 0), 0);
    }
}
