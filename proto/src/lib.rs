//! vipa's bytes: wire formats, the control protocol, the configuration,
//! Maglev and the shared-memory snapshot layout.
//!
//! Nothing here does I/O, reads a clock or spawns a thread; parsing never
//! allocates. Every other crate builds on these definitions so that all
//! binaries agree on what a packet, a configuration and a Maglev table are.

pub mod build;
pub mod config;
pub mod ctl;
pub mod flowkey;
pub mod maglev;
pub mod snapshot;
pub mod wire;
