//! A minimal blocking HTTP/1.1 client over `std::net::TcpStream`.
//!
//! Design decision: `vipactl` sends one request per command to a daemon on
//! a trusted management address (plain HTTP, no redirects, no TLS, one
//! `Content-Length` body), so a hundred lines of std replace a client crate:
//! no new dependency, no async runtime in a CLI, and the failure modes
//! (which address was tried, refused vs timed out) stay ours to report.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Where the daemon's API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` as given (for the `Host` header and messages).
    pub authority: String,
}

impl Endpoint {
    /// Parses `http://host:port`, `http://host` (port 9470) or `host:port`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "{url}: only http:// is supported (the API has no TLS), not {scheme}://"
                ))
            }
            None => url,
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!(
                "{url}: no host, expected e.g. http://127.0.0.1:9470"
            ));
        }
        // A port unless the authority already ends in one (IPv6 in brackets).
        let has_port = match authority.rsplit_once(':') {
            Some((host, port)) => {
                (!host.starts_with('[') || host.ends_with(']')) && port.parse::<u16>().is_ok()
            }
            None => false,
        };
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:9470")
        };
        Ok(Endpoint { authority })
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.authority)
    }
}

/// What can go wrong talking to the daemon.
#[derive(Debug)]
pub enum HttpError {
    /// No connection (refused, timed out, no such host): exit code 2.
    Unreachable(String),
    /// Connected, but the answer is no HTTP we understand: exit code 1.
    Protocol(String),
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: String,
}

/// Sends `method path` with an optional JSON body; waits `timeout` at most
/// for each of connecting, writing and reading.
pub fn request(
    ep: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<Reply, HttpError> {
    let addrs: Vec<SocketAddr> = ep
        .authority
        .to_socket_addrs()
        .map_err(|e| HttpError::Unreachable(format!("cannot resolve {}: {e}", ep.authority)))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(format!("{a}: {e}")),
        }
    }
    let Some(mut s) = stream else {
        return Err(HttpError::Unreachable(last.unwrap_or_else(|| {
            format!("{} resolves to no address", ep.authority)
        })));
    };
    let io = |e: std::io::Error| HttpError::Protocol(format!("{}: {e}", ep.authority));
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: vipactl/{}\r\nAccept: application/json\r\nConnection: close\r\n{}Content-Length: {}\r\n\r\n",
        ep.authority,
        env!("CARGO_PKG_VERSION"),
        if body.is_empty() { "" } else { "Content-Type: application/json\r\n" },
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(io)?;
    s.write_all(body.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io)?;
    parse_reply(&raw).map_err(|e| HttpError::Protocol(format!("{}: {e}", ep.authority)))
}

/// Parses a whole `Connection: close` answer.
pub fn parse_reply(raw: &[u8]) -> Result<Reply, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("the answer ends before its headers do")?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("not an HTTP answer: {status_line:?}"))?;
    let mut body = body.to_owned();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("transfer-encoding") && v.trim() == "chunked" {
                body = dechunk(&body)?;
            } else if k.eq_ignore_ascii_case("content-length") {
                if let Ok(n) = v.trim().parse::<usize>() {
                    body.truncate(n);
                }
            }
        }
    }
    Ok(Reply { status, body })
}

fn dechunk(mut s: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").ok_or("truncated chunk")?;
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size:?}"))?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..n).ok_or("truncated chunk")?);
        s = rest.get(n + 2..).ok_or("truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let a = |s: &str| Endpoint::parse(s).map(|e| e.authority);
        assert_eq!(a("http://127.0.0.1:9470").unwrap(), "127.0.0.1:9470");
        assert_eq!(a("127.0.0.1:1234").unwrap(), "127.0.0.1:1234");
        assert_eq!(a("http://fwd-a/").unwrap(), "fwd-a:9470");
        assert_eq!(a("http://[::1]:80").unwrap(), "[::1]:80");
        assert_eq!(a("[::1]").unwrap(), "[::1]:9470");
        assert!(a("https://x:1").unwrap_err().contains("only http://"));
        assert!(a("http://").is_err());
    }

    #[test]
    fn replies() {
        let r = parse_reply(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}xx").unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "{}"));
        let r = parse_reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, "abcde");
        assert!(parse_reply(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_reply(b"HTTP/1.1 200").is_err());
    }
}
