//! vipa's control plane.
//!
//! - [`cluster`]: the membership and failover protocol as sans-IO state
//!   machines (routing node and agent).
//! - [`agent`]: the code behind `vipa-agent`, which runs on every target.
//! - [`snapshot`]: the snapshot writer and the back-channel reader of the
//!   channel to the forwarder.
//!
//! - [`daemon`]: the tokio drivers: `vipa-control` and `vipa-agent run`.
//!
//! - [`cli`]: the operator CLI, `vipactl` (DESIGN.md §3), a client of the
//!   daemon's HTTP API.

pub mod agent;
pub mod cli;
pub mod cluster;
pub mod daemon;
pub mod snapshot;
