//! vipa's data plane.
//!
//! A worker ([`worker::Worker`]) owns one queue of every port, a flow table
//! ([`flow::FlowTable`]) and its counters ([`counters::Counters`]); it runs
//! bursts through the pipeline ([`pipeline::Pipeline`]) against immutable
//! tables ([`tables::Tables`]), which the control plane's snapshots replace
//! between bursts ([`snapshot`]). Ports ([`port::PortQueue`]) are backends: the
//! in-memory rings of tests and benchmarks, pcap replay, and the live NIC
//! backends — all run the same worker code.

pub mod buf;
pub mod counters;
pub mod flow;
pub mod neighbor;
pub mod pipeline;
pub mod port;
pub mod replay;
pub mod run;
pub mod snapshot;
pub mod tables;
pub mod worker;
