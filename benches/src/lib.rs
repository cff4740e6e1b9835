//! vipa's benchmarks and traffic tools: the pipeline throughput harness
//! ([`pipeline`]) and the demo capture generator ([`capture`]).

pub mod capture;
pub mod pipeline;
