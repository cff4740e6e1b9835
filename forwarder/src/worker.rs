//! The per-core poll loop.
//!
//! A worker owns one queue of every port, its flow table and its counters.
//! One [`Worker::poll`] receives a burst from each queue, runs it through the
//! pipeline and hands the results to the same queue (transmit), to the host,
//! or back to the pool (drops). Nothing here takes a lock or allocates: the
//! bursts are fixed arrays reused from poll to poll.

use std::sync::Arc;

use crate::counters::{Counter, Counters};
use crate::pipeline::{Outputs, Pipeline};
use crate::port::{Burst, PortQueue};
use crate::tables::Tables;

/// A worker: queues, pipeline state, reusable bursts.
pub struct Worker<Q: PortQueue> {
    /// The queues this worker owns, each with the index of its port in the tables.
    pub queues: Vec<(usize, Q)>,
    /// The pipeline state (flow table, counters, tables).
    pub pipeline: Pipeline,
    burst_size: usize,
    rx: Burst<Q::Buf>,
    out: Outputs<Q::Buf>,
}

impl<Q: PortQueue> Worker<Q> {
    /// A worker over `queues` (queue handle with its port's index) using `tables`.
    pub fn new(queues: Vec<(usize, Q)>, tables: Arc<Tables>) -> Self {
        let burst_size = tables.burst_size;
        Worker {
            queues,
            pipeline: Pipeline::new(tables),
            burst_size,
            rx: Burst::new(),
            out: Outputs::new(),
        }
    }

    /// The worker's counters.
    pub fn counters(&self) -> &Counters {
        &self.pipeline.counters
    }

    /// Polls every queue once; `now` is in seconds on the worker's clock.
    /// Returns the number of frames received.
    #[inline]
    pub fn poll(&mut self, now: u32) -> usize {
        let mut received = 0;
        for (port, queue) in self.queues.iter_mut() {
            let port = *port;
            let n = queue.rx_burst(&mut self.rx, self.burst_size);
            if n == 0 {
                continue;
            }
            received += n;
            self.pipeline
                .process_burst(port, &mut self.rx, now, &mut self.out);
            flush(queue, &mut self.out, &mut self.pipeline.counters);
        }
        received
    }
}

/// Sends what the pipeline produced for one queue; frees what could not go.
#[inline]
fn flush<Q: PortQueue>(queue: &mut Q, out: &mut Outputs<Q::Buf>, counters: &mut Counters) {
    if !out.tx.is_empty() {
        let queued = out.tx.len();
        let bytes: usize = out.tx.iter().map(crate::buf::PacketBuffer::len).sum();
        queue.tx_burst(&mut out.tx);
        let unsent = out.tx.len();
        let unsent_bytes: usize = out.tx.iter().map(crate::buf::PacketBuffer::len).sum();
        counters.add(Counter::TxPackets, (queued - unsent) as u64);
        counters.add(Counter::TxBytes, (bytes - unsent_bytes) as u64);
        if unsent != 0 {
            counters.add(Counter::DropTxFull, unsent as u64);
            for b in out.tx.drain(..) {
                queue.free(b);
            }
        }
    }
    if !out.host.is_empty() {
        queue.to_host(&mut out.host);
        if !out.host.is_empty() {
            counters.add(Counter::DropHostFull, out.host.len() as u64);
            for b in out.host.drain(..) {
                queue.free(b);
            }
        }
    }
    for b in out.drop.drain(..) {
        queue.free(b);
    }
}
