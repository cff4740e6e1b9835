//! What `vipa-control` tells of its forwarder: the back channel
//! ([`vipa_proto::snapshot::back`]) read as a health verdict for people.
//!
//! # Design decisions
//!
//! - **Liveness from two clocks.** The loader stamps its heartbeat on the
//!   wall clock every poll (2 ms), so its age needs no sampling: a
//!   forwarder that stopped or hung shows an old heartbeat at once. The
//!   workers stamp their counter copies with their own clock (whole
//!   seconds since the forwarder started), which only says something when
//!   it moves: [`Watch`] notes, on the daemon's 10 ms back-channel tick,
//!   when each worker's stamp last changed. A worker stuck in a loop (or
//!   descheduled for good) stops moving while the loader goes on.
//! - The verdict is a word (`ok`, `stalled`, `down`, `starting`) and a
//!   sentence naming what to check; the figures it comes from are in the
//!   JSON next to it, so scripts need not parse the sentence.

use crate::snapshot::{ForwarderState, WorkerState};

/// The loader's heartbeat is older than this: the forwarder is down (it
/// polls every 2 ms).
pub const HEARTBEAT_STALE_MS: u64 = 2_000;
/// A worker's counter stamp has not moved for this long: it is stalled (it
/// moves once a second).
pub const WORKER_STALL_MS: u64 = 3_500;

/// When each worker's counter stamp last moved (the daemon's clock, ms).
#[derive(Clone, Debug, Default)]
pub struct Watch {
    /// The forwarder these are for (its pid and start): a new forwarder
    /// starts the watch afresh.
    whose: (u64, u64),
    /// Per worker: the stamp seen last and when it changed.
    workers: Vec<(u64, u64)>,
}

impl Watch {
    /// Notes what `state` shows at `now`.
    pub fn observe(&mut self, now: u64, state: &ForwarderState) {
        let whose = (state.identity.pid, state.identity.started_unix_ms);
        if whose != self.whose || self.workers.len() != state.workers.len() {
            self.whose = whose;
            self.workers = state.workers.iter().map(|w| (w.published, now)).collect();
            return;
        }
        for (seen, w) in self.workers.iter_mut().zip(&state.workers) {
            if seen.0 != w.published {
                *seen = (w.published, now);
            }
        }
    }

    /// Per worker, how long its stamp has stood still at `now` (ms).
    pub fn still_for(&self, now: u64) -> Vec<u64> {
        self.workers
            .iter()
            .map(|&(_, at)| now.saturating_sub(at))
            .collect()
    }

    /// Forgets everything (the back channel went away).
    pub fn reset(&mut self) {
        *self = Watch::default();
    }
}

/// The verdict on a forwarder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// `ok`, `stalled`, `down` or `starting`.
    pub word: &'static str,
    /// What is wrong and what to check; `None` when ok.
    pub problem: Option<String>,
}

/// Judges `state`, read at `now_unix_ms` (wall clock), given how long each
/// worker's stamp has stood still (`still_ms`, from [`Watch::still_for`]).
pub fn health(state: &ForwarderState, now_unix_ms: u64, still_ms: &[u64]) -> Health {
    let hb = state.loader.heartbeat_unix_ms;
    let pid = state.identity.pid;
    if hb == 0 {
        return Health {
            word: "starting",
            problem: Some(format!(
                "the forwarder (pid {pid}) has set up its back channel but its loader has not polled yet"
            )),
        };
    }
    let age = now_unix_ms.saturating_sub(hb);
    if age > HEARTBEAT_STALE_MS {
        return Health {
            word: "down",
            problem: Some(format!(
                "no heartbeat from the forwarder for {}s: is vipa-forwarder (pid {pid}) still running? \
                 (its back channel stays in place after it exits)",
                age / 1000
            )),
        };
    }
    let stalled: Vec<String> = still_ms
        .iter()
        .enumerate()
        .filter(|(_, &ms)| ms > WORKER_STALL_MS)
        .map(|(w, ms)| format!("worker {w} ({}s)", ms / 1000))
        .collect();
    if !stalled.is_empty() {
        return Health {
            word: "stalled",
            problem: Some(format!(
                "{} stopped copying counters: stuck in a loop, or its CPU taken? \
                 (the loader still polls)",
                stalled.join(", ")
            )),
        };
    }
    Health {
        word: "ok",
        problem: None,
    }
}

/// Whether every worker uses `generation`.
pub fn in_sync(workers: &[WorkerState], generation: u64) -> bool {
    !workers.is_empty() && workers.iter().all(|w| w.generation == generation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vipa_proto::snapshot::back::{Identity, LoaderFigures};

    fn state(hb: u64, stamps: &[u64]) -> ForwarderState {
        ForwarderState {
            identity: Identity {
                pid: 42,
                started_unix_ms: 1,
                backend: "afxdp".into(),
            },
            loader: LoaderFigures {
                heartbeat_unix_ms: hb,
                ..LoaderFigures::default()
            },
            workers: stamps
                .iter()
                .map(|&p| WorkerState {
                    generation: 3,
                    published: p,
                })
                .collect(),
        }
    }

    #[test]
    fn a_fresh_heartbeat_and_moving_workers_are_ok() {
        let s = state(10_000, &[5, 5]);
        let h = health(&s, 10_500, &[0, 900]);
        assert_eq!(
            h,
            Health {
                word: "ok",
                problem: None
            }
        );
        assert!(in_sync(&s.workers, 3));
        assert!(!in_sync(&s.workers, 4));
        assert!(!in_sync(&[], 0));
    }

    #[test]
    fn an_old_heartbeat_is_down_and_says_what_to_check() {
        let h = health(&state(10_000, &[5]), 25_000, &[0]);
        assert_eq!(h.word, "down");
        let p = h.problem.unwrap();
        assert!(p.contains("15s") && p.contains("pid 42"), "{p}");
        assert_eq!(health(&state(0, &[5]), 25_000, &[0]).word, "starting");
    }

    #[test]
    fn a_worker_whose_stamp_stands_still_is_stalled() {
        let mut w = Watch::default();
        let s = state(10_000, &[5, 5]);
        w.observe(0, &s);
        w.observe(1_000, &state(10_000, &[6, 5]));
        w.observe(4_000, &state(10_000, &[9, 5]));
        let still = w.still_for(4_000);
        assert_eq!(still, [0, 4_000]);
        let h = health(&s, 10_001, &still);
        assert_eq!(h.word, "stalled");
        assert!(h.problem.unwrap().contains("worker 1 (4s)"));
        // Another forwarder (a restart): the watch starts again.
        let mut other = state(10_000, &[1, 1]);
        other.identity.pid = 43;
        w.observe(5_000, &other);
        assert_eq!(w.still_for(5_000), [0, 0]);
    }
}
