//! `vipa-agent`: what runs on a target.
//!
//! - [`decap`]: a user-space GRE decapsulator (AF_PACKET in, TUN out) for
//!   targets whose kernel has no GRE module.
//! - [`discovery`]: which applications listen on the VIPAs and which
//!   connections to them this target holds (netlink `sock_diag`), and what
//!   changed since the last look.
//!
//! Reporting them to the owner of each VIPA comes later.

pub mod decap;
pub mod discovery;
