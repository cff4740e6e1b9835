//! vipa's benchmarks and traffic tools: the pipeline throughput harness
//! ([`pipeline`]), the DPDK harness (`dpdk`, cargo feature `dpdk`) and the
//! demo capture generator ([`capture`]).

pub mod capture;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod pipeline;
