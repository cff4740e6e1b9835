//! Raw bindings to the system DPDK 22.11 LTS, generated at build time by
//! bindgen from `wrapper.h` (see `build.rs`), allow-listed to what vipa's
//! `dpdk` port backend uses.
//!
//! DPDK's fast path is made of `static inline` functions; each has an
//! exported C wrapper compiled by `build.rs`, so `rte_eth_rx_burst`,
//! `rte_pktmbuf_alloc` and friends are callable here under their own names
//! (they are real calls, not inlined). `rte_errno` is thread-local in C:
//! read it with [`vipa_rte_errno`].
//!
//! Everything here is `unsafe` FFI; the safe wrapper is
//! `vipa_forwarder::port::dpdk`.

#![no_std]

/// The generated bindings (C naming, no safety comments: generated code).
#[allow(
    unknown_lints,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    missing_docs,
    unsafe_op_in_unsafe_fn,
    unnecessary_transmutes,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks
)]
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

pub use bindings::*;
