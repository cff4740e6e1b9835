//! vipa's control plane.
//!
//! For now the target side, [`agent`] (the code behind `vipa-agent`, which
//! runs on every target), and the snapshot channel to the forwarder,
//! [`snapshot`]. The daemon (`vipa-control`) and
//! the operator CLI (`vipactl`) follow (DESIGN.md §3).

pub mod agent;
pub mod snapshot;
