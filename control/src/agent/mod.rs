//! `vipa-agent`: what runs on a target.
//!
//! - [`decap`]: a user-space GRE decapsulator (AF_PACKET in, TUN out) for
//!   targets whose kernel has no GRE module.
//!
//! Listener and connection reporting (netlink `sock_diag`) comes later.

pub mod decap;
