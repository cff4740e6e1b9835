//! `vipa-agent sockets`: the inventory as a table for people or JSON for
//! scripts, once or as a stream of timestamped changes (`--watch`).

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{Connection, Delta, Discovery, DiscoveryError, Inventory, Listener, Scope};

/// Longest sleep between two looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// After a failed inventory while watching, at most one warning per this.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The inventory as text: the listeners, then the connections, one per line.
///
/// ```text
/// listeners: 1
///   tcp 10.99.0.100:80
/// connections: 1
///   tcp 10.99.0.100:80 <- 10.99.0.10:40000
/// ```
pub fn inventory_table(inventory: &Inventory) -> String {
    let mut s = format!("listeners: {}\n", inventory.listeners.len());
    for l in &inventory.listeners {
        s += &format!("  {l}\n");
    }
    s += &format!("connections: {}\n", inventory.connections.len());
    for c in &inventory.connections {
        s += &format!("  {c}\n");
    }
    s
}

fn listener_json(l: &Listener) -> Value {
    json!({ "protocol": l.protocol.to_string(), "service": l.service.to_string() })
}

fn connection_json(c: &Connection) -> Value {
    json!({ "protocol": "tcp", "service": c.service.to_string(), "client": c.client.to_string() })
}

/// The inventory as JSON: `{"listeners": [{"protocol", "service"}],
/// "connections": [{"protocol", "service", "client"}]}`, addresses as
/// `ip:port` (`[ip6]:port`).
pub fn inventory_json(inventory: &Inventory) -> Value {
    json!({
        "listeners": inventory.listeners.iter().map(listener_json).collect::<Vec<_>>(),
        "connections": inventory.connections.iter().map(connection_json).collect::<Vec<_>>(),
    })
}

/// A delta as text: one line per change, `TIME +listener …`,
/// `TIME -connection …`; removals first.
pub fn delta_lines(at: SystemTime, delta: &Delta) -> String {
    let t = utc_timestamp(at);
    let mut s = String::new();
    for l in &delta.listeners_removed {
        s += &format!("{t} -listener {l}\n");
    }
    for c in &delta.connections_removed {
        s += &format!("{t} -connection {c}\n");
    }
    for l in &delta.listeners_added {
        s += &format!("{t} +listener {l}\n");
    }
    for c in &delta.connections_added {
        s += &format!("{t} +connection {c}\n");
    }
    s
}

/// A delta as one JSON object: `time` and the four sets.
pub fn delta_json(at: SystemTime, delta: &Delta) -> Value {
    json!({
        "time": utc_timestamp(at),
        "listeners_added": delta.listeners_added.iter().map(listener_json).collect::<Vec<_>>(),
        "listeners_removed": delta.listeners_removed.iter().map(listener_json).collect::<Vec<_>>(),
        "connections_added": delta.connections_added.iter().map(connection_json).collect::<Vec<_>>(),
        "connections_removed": delta.connections_removed.iter().map(connection_json).collect::<Vec<_>>(),
    })
}

/// `at` as RFC 3339 UTC with milliseconds: `2023-11-14T22:13:20.000Z`.
/// Times before 1970 print as 1970-01-01T00:00:00.000Z.
pub fn utc_timestamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01, by
/// counting 400-year eras of 146 097 days from 0000-03-01 (a year that
/// starts in March puts the leap day at its end).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// What `vipa-agent sockets` was asked for.
#[derive(Clone, Debug)]
pub struct SocketsOptions {
    /// VIPAs and services.
    pub scope: Scope,
    /// JSON instead of text.
    pub json: bool,
    /// Keep watching and print changes.
    pub watch: bool,
    /// How often to dump while watching.
    pub interval: Duration,
}

/// Why `vipa-agent sockets` stopped.
#[derive(Debug, thiserror::Error)]
pub enum SocketsError {
    /// Listing sockets failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// Writing the output failed (other than the reader going away).
    #[error("writing the output: {0}")]
    Output(#[source] io::Error),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signal(#[source] io::Error),
}

/// Prints the inventory once, or (with `watch`) every change until `stop`
/// is set. A reader that goes away (a closed pipe) ends it quietly.
pub fn run_sockets(
    opts: &SocketsOptions,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> Result<(), SocketsError> {
    match print_sockets(opts, stop, out) {
        Err(SocketsError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn print_sockets(
    opts: &SocketsOptions,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> Result<(), SocketsError> {
    let mut discovery = Discovery::new(opts.scope.clone(), opts.interval);
    if !opts.watch {
        let inventory = discovery.take_inventory()?;
        let text = if opts.json {
            format!("{:#}\n", inventory_json(&inventory))
        } else {
            inventory_table(&inventory)
        };
        out.write_all(text.as_bytes())
            .map_err(SocketsError::Output)?;
        return Ok(());
    }
    let mut first = true;
    let mut last_warning: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        match discovery.poll(now) {
            Ok(Some(delta)) => {
                let at = SystemTime::now();
                let text = if opts.json {
                    format!("{}\n", delta_json(at, &delta))
                } else {
                    delta_lines(at, &delta)
                };
                out.write_all(text.as_bytes())
                    .map_err(SocketsError::Output)?;
                out.flush().map_err(SocketsError::Output)?;
            }
            Ok(None) => {}
            // Nothing was ever listed: the cause is not passing.
            Err(e) if first => return Err(e.into()),
            Err(e) => {
                if last_warning.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
                    last_warning = Some(now);
                    tracing::warn!("{e}; keeping the last inventory and trying again");
                }
            }
        }
        first = false;
        let wait = discovery.poll_timeout().map_or(Duration::ZERO, |due| {
            due.saturating_duration_since(Instant::now())
        });
        std::thread::sleep(wait.min(STOP_CHECK));
    }
    Ok(())
}

/// [`run_sockets`] to stdout until SIGINT or SIGTERM.
pub fn run_sockets_until_signal(opts: &SocketsOptions) -> Result<(), SocketsError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(SocketsError::Signal)?;
    }
    run_sockets(opts, &stop, &mut io::stdout().lock())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vipa_proto::config::L4Protocol;

    fn sample() -> Inventory {
        Inventory {
            listeners: [
                Listener {
                    protocol: L4Protocol::Tcp,
                    service: "10.99.0.100:80".parse().unwrap(),
                },
                Listener {
                    protocol: L4Protocol::Udp,
                    service: "[fd00:99::100]:53".parse().unwrap(),
                },
            ]
            .into(),
            connections: [Connection {
                service: "10.99.0.100:80".parse().unwrap(),
                client: "10.99.0.10:40000".parse().unwrap(),
            }]
            .into(),
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_millis(s * 1000 + ms);
        assert_eq!(utc_timestamp(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            utc_timestamp(at(1_700_000_000, 123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            utc_timestamp(at(951_782_400, 0)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            utc_timestamp(at(4_107_542_399, 999)),
            "2100-02-28T23:59:59.999Z"
        );
        assert_eq!(
            utc_timestamp(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn every_day_of_four_centuries_follows_the_previous_one() {
        let mut prev = civil_from_days(-1);
        for day in 0..146_097 {
            let (y, m, d) = civil_from_days(day);
            let next_day = (y, m, d) == (prev.0, prev.1, prev.2 + 1);
            let next_month = d == 1 && (y, m) == (prev.0, prev.1 + 1);
            let next_year = (m, d) == (1, 1) && y == prev.0 + 1 && prev.1 == 12;
            assert!(
                next_day || next_month || next_year,
                "{prev:?} -> {:?}",
                (y, m, d)
            );
            prev = (y, m, d);
        }
    }

    #[test]
    fn the_table_lists_listeners_then_connections() {
        assert_eq!(
            inventory_table(&sample()),
            "listeners: 2\n  tcp 10.99.0.100:80\n  udp [fd00:99::100]:53\n\
             connections: 1\n  tcp 10.99.0.100:80 <- 10.99.0.10:40000\n"
        );
        assert_eq!(
            inventory_table(&Inventory::default()),
            "listeners: 0\nconnections: 0\n"
        );
    }

    #[test]
    fn json_names_protocol_service_and_client() {
        let v = inventory_json(&sample());
        assert_eq!(v["listeners"][1]["protocol"], "udp");
        assert_eq!(v["listeners"][1]["service"], "[fd00:99::100]:53");
        assert_eq!(v["connections"][0]["client"], "10.99.0.10:40000");
        assert_eq!(v["connections"][0]["service"], "10.99.0.100:80");
    }

    #[test]
    fn deltas_print_removals_first_with_a_timestamp() {
        let gone = sample();
        let delta = Delta {
            listeners_added: [Listener {
                protocol: L4Protocol::Tcp,
                service: "10.99.0.100:81".parse().unwrap(),
            }]
            .into(),
            connections_removed: gone.connections.clone(),
            ..Delta::default()
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            delta_lines(at, &delta),
            "2023-11-14T22:13:20.000Z -connection tcp 10.99.0.100:80 <- 10.99.0.10:40000\n\
             2023-11-14T22:13:20.000Z +listener tcp 10.99.0.100:81\n"
        );
        let v = delta_json(at, &delta);
        assert_eq!(v["time"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["listeners_added"][0]["service"], "10.99.0.100:81");
        assert_eq!(v["connections_removed"][0]["client"], "10.99.0.10:40000");
        assert_eq!(v["listeners_removed"].as_array().map(Vec::len), Some(0));
    }
}
