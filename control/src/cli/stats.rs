//! `vipactl stats [--watch]`: the daemon's counters and the forwarder's
//! per reason and worker, once or redrawn every interval with per-second
//! rates.
//!
//! # Design decisions
//!
//! - **Rates from successive samples**, over the time measured between
//!   them (not the nominal interval: a slow answer would inflate them). A
//!   counter that went down (the forwarder restarted, its counters with
//!   it) has no rate for that step rather than a huge or negative one.
//! - **Ctrl-C ends a watch with exit code 0**: it is how a person stops
//!   watching, not a failure. SIGINT and SIGTERM set a flag (signal-hook,
//!   already a dependency) that the loop checks every 50 ms.
//! - A daemon that stops answering during a watch is shown on the screen
//!   (or as `{"error": …}` lines with `--json`) and asked again next
//!   interval; only the first sample's failure ends the command with its
//!   exit code, as without `--watch`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::table::{thousands, Align, Table};
use super::{refused, text, Failure};

/// Clears a terminal and puts the cursor home (ANSI: CSI H, CSI 2J).
pub const CLEAR: &str = "\x1b[H\x1b[2J";

/// Per-second rates between two `/v1/counters` answers taken `seconds`
/// apart: the same shape (`control`: name → rate; `forwarder`: per worker,
/// name → rate), each rate `null` when the counter went down.
pub fn counter_rates(before: &Value, after: &Value, seconds: f64) -> Value {
    let rates = |b: &Value, a: &Value| -> Value {
        let Some(a) = a.as_object() else {
            return Value::Null;
        };
        let m: Map<String, Value> = a
            .iter()
            .map(|(k, now)| {
                let was = b[k.as_str()].as_u64().unwrap_or(0);
                let rate = match now.as_u64() {
                    Some(n) if n >= was && seconds > 0.0 => json!((n - was) as f64 / seconds),
                    _ => Value::Null,
                };
                (k.clone(), rate)
            })
            .collect();
        Value::Object(m)
    };
    let forwarder = match after["forwarder"].as_array() {
        Some(workers) => Value::Array(
            workers
                .iter()
                .enumerate()
                .map(|(w, a)| rates(&before["forwarder"][w], a))
                .collect(),
        ),
        None => Value::Null,
    };
    json!({
        "control": rates(&before["control"], &after["control"]),
        "forwarder": forwarder,
    })
}

/// A rate for people: `-` for none, one decimal below 10, else whole and
/// with thousands separators.
pub fn rate_text(r: &Value) -> String {
    match r.as_f64() {
        None => "-".to_owned(),
        Some(x) if x < 10.0 => format!("{x:.1}"),
        Some(x) => thousands(x.round() as u64),
    }
}

/// `vipactl stats` as tables: the daemon's counters, then the forwarder's
/// per reason (rows) and worker (columns); with `rates` (from
/// [`counter_rates`]) a per-second column for each value.
pub fn render_stats(v: &Value, rates: Option<&Value>) -> String {
    let mut s = format!(
        "node {}\n\ncontrol plane (vipa-control)\n",
        text(&v["node"])
    );
    let mut cols = vec![("COUNTER", Align::Left), ("VALUE", Align::Right)];
    if rates.is_some() {
        cols.push(("PER SECOND", Align::Right));
    }
    let mut t = Table::new(&cols);
    if let Some(m) = v["control"].as_object() {
        for (k, val) in m {
            let mut cells = vec![k.clone(), text(val)];
            if let Some(r) = rates {
                cells.push(rate_text(&r["control"][k.as_str()]));
            }
            t.row(cells);
        }
    }
    s.push_str(&t.render());
    s.push_str("\nforwarder (from its back channel)\n");
    let Some(workers) = v["forwarder"].as_array() else {
        s.push_str("no counters: no forwarder is attached to this daemon's snapshot channel\n");
        return s;
    };
    let mut names: Vec<&String> = workers
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|m| m.keys())
        .collect();
    names.sort();
    names.dedup();
    // Watching: each worker's rate (the values are in TOTAL); else each
    // worker's value.
    let unit = if rates.is_some() { " /s" } else { "" };
    let heads: Vec<String> = (0..workers.len())
        .map(|w| format!("WORKER {w}{unit}"))
        .collect();
    let mut cols: Vec<(&str, Align)> = vec![("COUNTER", Align::Left)];
    cols.extend(heads.iter().map(|h| (h.as_str(), Align::Right)));
    cols.push(("TOTAL", Align::Right));
    if rates.is_some() {
        cols.push(("TOTAL /s", Align::Right));
    }
    let mut t = Table::new(&cols);
    let mut quiet = 0;
    for n in names {
        let vals: Vec<u64> = workers
            .iter()
            .map(|w| w[n.as_str()].as_u64().unwrap_or(0))
            .collect();
        // Watching, a screen has room for what moves: counters still at 0
        // are left out (and counted below).
        if rates.is_some() && vals.iter().all(|&x| x == 0) {
            quiet += 1;
            continue;
        }
        let mut cells = vec![n.clone()];
        match rates {
            Some(r) => {
                // A counter a worker does not have at all moves at 0/s.
                let per: Vec<Option<f64>> = workers
                    .iter()
                    .enumerate()
                    .map(|(w, wv)| match wv.get(n.as_str()) {
                        None => Some(0.0),
                        Some(_) => r["forwarder"][w][n.as_str()].as_f64(),
                    })
                    .collect();
                cells.extend(per.iter().map(|x| rate_text(&json!(x))));
                cells.push(thousands(vals.iter().sum()));
                // No total rate if any worker's is unknown (a restart).
                let total: Option<f64> = per.iter().copied().sum();
                cells.push(rate_text(&json!(total)));
            }
            None => {
                cells.extend(vals.iter().map(|x| thousands(*x)));
                cells.push(thousands(vals.iter().sum()));
            }
        }
        t.row(cells);
    }
    s.push_str(&t.render());
    if quiet > 0 {
        s.push_str(&format!(
            "({quiet} counters still at 0 not shown; vipactl stats shows all)\n"
        ));
    }
    s
}

/// Stops a watch when SIGINT or SIGTERM arrives.
fn stop_on_signals() -> Result<Arc<AtomicBool>, Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| refused(format!("cannot catch Ctrl-C for --watch: {e}")))?;
    }
    Ok(stop)
}

/// Sleeps `d`, waking every 50 ms to look at `stop`; false when stopped.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    false
}

/// `stats --watch`: samples with `fetch` every `interval` until Ctrl-C,
/// printing a fresh screen (or, with `json`, one JSON object per line)
/// each time. The first sample's failure is returned; later ones are
/// shown and the watch goes on.
pub fn watch(
    out: &mut dyn Write,
    interval: Duration,
    json_lines: bool,
    fetch: &mut dyn FnMut() -> Result<Value, Failure>,
) -> Result<(), Failure> {
    let stop = stop_on_signals()?;
    let write = |out: &mut dyn Write, s: &str| {
        out.write_all(s.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| refused(format!("writing the output: {e}")))
    };
    let mut before: Option<(Value, Instant)> = None;
    let mut first = true;
    loop {
        let sample = fetch();
        let at = Instant::now();
        match sample {
            Ok(v) => {
                let rates = before
                    .as_ref()
                    .map(|(b, t)| counter_rates(b, &v, at.duration_since(*t).as_secs_f64()));
                let text = if json_lines {
                    let mut line = v.clone();
                    line["interval_s"] = json!(before
                        .as_ref()
                        .map(|(_, t)| at.duration_since(*t).as_secs_f64()));
                    line["rates"] = rates.clone().unwrap_or(Value::Null);
                    format!("{line}\n")
                } else {
                    let head = match &before {
                        Some((_, t)) => format!(
                            "every {:.1}s, rates over the last {:.2}s; Ctrl-C to stop\n",
                            interval.as_secs_f64(),
                            at.duration_since(*t).as_secs_f64()
                        ),
                        None => format!(
                            "every {:.1}s, rates from the next sample on; Ctrl-C to stop\n",
                            interval.as_secs_f64()
                        ),
                    };
                    format!("{CLEAR}{head}{}", render_stats(&v, rates.as_ref()))
                };
                write(out, &text)?;
                before = Some((v, at));
            }
            Err(f) if first => return Err(f),
            Err(f) => {
                let text = if json_lines {
                    format!("{}\n", json!({ "error": f.message }))
                } else {
                    format!(
                        "{CLEAR}{}\n(retrying every {:.1}s; Ctrl-C to stop)\n",
                        f.message,
                        interval.as_secs_f64()
                    )
                };
                write(out, &text)?;
            }
        }
        first = false;
        if !nap(interval, &stop) {
            return Ok(());
        }
    }
}
