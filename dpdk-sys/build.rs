//! Generates bindings to Debian's DPDK 22.11 and compiles the C wrappers that make
//! its `static inline` fast-path functions (rx/tx burst, mbuf alloc/free, ...)
//! callable from Rust.

use std::env;
use std::path::PathBuf;

const INSTALL_HINT: &str = "DPDK 22.11 development files were not found through pkg-config (libdpdk).\n\
     On Debian 12 install them with:\n    apt-get install -y dpdk libdpdk-dev dpdk-dev libclang-dev pkg-config clang";

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=src/helpers.c");

    let dpdk = match pkg_config::Config::new()
        .atleast_version("22.11")
        .cargo_metadata(true)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => panic!("\n\n{INSTALL_HINT}\n\npkg-config said: {e}\n"),
    };

    // The full cflags (-include rte_config.h -march=corei7 ...) must reach both
    // bindgen and the C compiler, or struct layouts and inline bodies disagree.
    let cflags: Vec<String> = run_pkg_config(&["--cflags", "libdpdk"])
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let wrap_c = out.join("static_fns.c");

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&cflags)
        .allowlist_function("rte_.*")
        .allowlist_function("ferrovs_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("rte_.*")
        .allowlist_var("RING_F_.*")
        // Packed structs nested in packed structs: rustc refuses the layout bindgen
        // emits, and ferrovs parses these headers itself.
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_gtp_.*")
        .opaque_type("rte_l2tpv2_.*")
        .derive_default(true)
        .derive_debug(false)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        // Flag macros built from RTE_BIT64() are not plain literals; let clang
        // evaluate them so RSS and offload flags come from the headers, not copies.
        .clang_macro_fallback()
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrap_c)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| panic!("\n\nbindgen failed on DPDK headers: {e}\n{INSTALL_HINT}\n"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");

    let mut build = cc::Build::new();
    build
        .file(&wrap_c)
        .file("src/helpers.c")
        .include(env::current_dir().unwrap())
        .opt_level(3)
        .warnings(false);
    for inc in &dpdk.include_paths {
        build.include(inc);
    }
    for flag in &cflags {
        if !flag.starts_with("-I") {
            build.flag(flag);
        }
    }
    build.compile("dpdk_static_fns");

    // The bonding PMD's API (rte_eth_bond_*) lives in the driver's own library.
    // The EAL loads drivers from RTE_EAL_PMD_PATH, and Debian ships a second copy
    // of each under libdir: ferrovs must use the one the EAL loads, or the bond's
    // calls would check its ports against another copy's ops and refuse them. So
    // link it from that directory; the ferrovs crate's build script puts the same
    // directory first in the binaries' run path, as Debian's dpdk-testpmd does.
    let pmd_dir = pmd_dir(&dpdk.include_paths);
    println!("cargo:rustc-link-search=native={pmd_dir}");
    println!("cargo:rustc-link-lib=dylib=rte_net_bond");
    println!("cargo:pmd_dir={pmd_dir}");
}

/// RTE_EAL_PMD_PATH from DPDK's rte_build_config.h.
fn pmd_dir(include_paths: &[PathBuf]) -> String {
    for dir in include_paths {
        let Ok(text) = std::fs::read_to_string(dir.join("rte_build_config.h")) else {
            continue;
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("#define RTE_EAL_PMD_PATH ") {
                return rest.trim().trim_matches('"').to_string();
            }
        }
    }
    panic!("\n\nRTE_EAL_PMD_PATH not found in rte_build_config.h\n{INSTALL_HINT}\n");
}

fn run_pkg_config(args: &[&str]) -> String {
    let out = std::process::Command::new("pkg-config")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("\n\ncannot run pkg-config: {e}\n{INSTALL_HINT}\n"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
