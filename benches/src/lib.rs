//! vipa's benchmarks and traffic tools: the pipeline throughput harness
//! ([`pipeline`]), the DPDK harness (`dpdk`, cargo feature `dpdk`) and the
//! demo capture generator ([`capture`]), and the live-port traffic generator
//! (`packet_gen`, Linux).

pub mod capture;
#[cfg(feature = "dpdk")]
pub mod dpdk;
#[cfg(target_os = "linux")]
pub mod packet_gen;
pub mod pipeline;
