//! Binds the system DPDK (22.11 LTS, found with pkg-config as `libdpdk`).
//!
//! 1. pkg-config: link flags (emitted for cargo) and the C flags DPDK needs
//!    (`-include rte_config.h`, `-march=...`, include paths).
//! 2. bindgen over `wrapper.h`, allow-listed to what vipa uses. Most of the
//!    fast path of DPDK is `static inline` (`rte_eth_rx_burst`,
//!    `rte_pktmbuf_alloc`, ...): `wrap_static_fns` writes a C file with an
//!    exported wrapper for each, which step 3 compiles.
//! 3. cc: the wrappers plus `shim.c` (the thread-local `rte_errno` and the
//!    `RTE_BIT64` constants, which bindgen cannot express).

use std::env;
use std::path::PathBuf;
use std::process::Command;

const INSTALL_HINT: &str = "vipa-dpdk-sys needs the system DPDK 22.11 LTS development files and \
     libclang: on Debian 12 run `apt-get install dpdk-dev libdpdk-dev clang libclang-dev \
     pkg-config` (or build without the `dpdk` feature)";

const FUNCTIONS: &[&str] = &[
    "vipa_rte_errno",
    "rte_strerror",
    "rte_eal_init",
    "rte_socket_id",
    "rte_lcore_id",
    "rte_thread_register",
    "rte_eth_dev_count_avail",
    "rte_eth_dev_get_port_by_name",
    "rte_eth_dev_socket_id",
    "rte_eth_dev_info_get",
    "rte_eth_dev_configure",
    "rte_eth_dev_adjust_nb_rx_tx_desc",
    "rte_eth_dev_set_mtu",
    "rte_eth_rx_queue_setup",
    "rte_eth_tx_queue_setup",
    "rte_eth_dev_start",
    "rte_eth_dev_stop",
    "rte_eth_promiscuous_enable",
    "rte_eth_link_get_nowait",
    "rte_eth_macaddr_get",
    "rte_eth_stats_get",
    "rte_eth_rx_burst",
    "rte_eth_tx_burst",
    "rte_pktmbuf_pool_create",
    "rte_pktmbuf_alloc",
    "rte_pktmbuf_free",
    "rte_pktmbuf_prepend",
    "rte_pktmbuf_adj",
    "rte_pktmbuf_append",
    "rte_pktmbuf_trim",
    "rte_pktmbuf_headroom",
    "rte_pktmbuf_tailroom",
    "rte_mempool_avail_count",
    "rte_mempool_in_use_count",
];

const VARS: &[&str] = &[
    "vipa_eth_.*",
    "RTE_MBUF_DEFAULT_BUF_SIZE",
    "RTE_PKTMBUF_HEADROOM",
    "RTE_MEMPOOL_CACHE_MAX_SIZE",
    "RTE_ETH_NAME_MAX_LEN",
    "RTE_ETH_LINK_UP",
    "RTE_MAX_ETHPORTS",
    "RTE_MBUF_F_TX_IPV4",
    "RTE_MBUF_F_TX_IP_CKSUM",
    "SOCKET_ID_ANY",
];

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    // 1. pkg-config: emits the link flags for cargo.
    let lib = match pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => panic!("\n\npkg-config could not find libdpdk >= 22.11: {e}\n{INSTALL_HINT}\n\n"),
    };
    // The crate exposes include paths and defines only; DPDK also needs
    // `-include rte_config.h` and `-march=...`, so take the full C flags.
    let cflags = Command::new(env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into()))
        .args(["--cflags", "libdpdk"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| panic!("\n\n`pkg-config --cflags libdpdk` failed\n{INSTALL_HINT}\n\n"));
    let mut cflags: Vec<String> = cflags.split_whitespace().map(str::to_owned).collect();
    cflags.push("-DALLOW_EXPERIMENTAL_API".into());
    cflags.push(format!("-I{}", manifest.display()));
    println!("cargo:version={}", lib.version);

    // 2. bindgen.
    let static_fns = out.join("static_fns");
    let mut builder = bindgen::Builder::default()
        .header(manifest.join("wrapper.h").display().to_string())
        .clang_args(&cflags)
        .use_core()
        .derive_debug(false)
        .derive_default(true)
        .generate_comments(false)
        .default_enum_style(bindgen::EnumVariation::ModuleConsts)
        .allowlist_type("rte_eth_rx_mq_mode")
        .allowlist_type("vipa_mbuf_tx_offload_layout")
        .wrap_static_fns(true)
        .wrap_static_fns_path(&static_fns)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for v in VARS {
        builder = builder.allowlist_var(v);
    }
    let bindings = builder
        .generate()
        .unwrap_or_else(|e| panic!("\n\nbindgen failed on wrapper.h: {e}\n{INSTALL_HINT}\n\n"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");

    // 3. cc: the static-function wrappers and the shim.
    let mut build = cc::Build::new();
    build
        .file(static_fns.with_extension("c"))
        .file(manifest.join("shim.c"))
        .opt_level(3)
        .warnings(false);
    let mut it = cflags.iter();
    while let Some(flag) = it.next() {
        if flag == "-include" {
            if let Some(file) = it.next() {
                build.flag("-include").flag(file);
            }
        } else {
            build.flag(flag);
        }
    }
    build.compile("vipa_dpdk_shim");
}
