//! vipa's control plane.
//!
//! For now only the target side exists: [`agent`], the code behind
//! `vipa-agent`, which runs on every target. The daemon (`vipa-control`) and
//! the operator CLI (`vipactl`) follow (DESIGN.md §3).

pub mod agent;
