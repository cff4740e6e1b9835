//! vipa's control plane.
//!
//! - [`cluster`]: the membership and failover protocol as sans-IO state
//!   machines (routing node and agent).
//! - [`agent`]: the code behind `vipa-agent`, which runs on every target.
//!
//! The daemon (`vipa-control`) and the operator CLI (`vipactl`) follow
//! (DESIGN.md §3).

pub mod agent;
pub mod cluster;
