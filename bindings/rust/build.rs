// SPDX-License-Identifier: MIT
//! Links libbpfmem.so: from $BPFMEM_LIB_DIR (a build tree's directory, with an rpath so that
//! this crate's tests and examples run from there; a dependent crate's binaries need
//! LD_LIBRARY_PATH or an installed copy), else from the linker's default search path (an
//! installed copy, e.g. /usr/local/lib).
use std::env;

fn main() {
    println!("cargo:rerun-if-env-changed=BPFMEM_LIB_DIR");
    if let Ok(dir) = env::var("BPFMEM_LIB_DIR") {
        println!("cargo:rustc-link-search=native={}", dir);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
    }
    println!("cargo:rustc-link-lib=dylib=bpfmem");
}
