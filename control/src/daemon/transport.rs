//! Moving control-protocol frames: TCP streams for the protocol's
//! messages, UDP datagrams for SWIM.
//!
//! # Design decisions
//!
//! - **One stream per direction.** To send to a peer, a process dials it
//!   (the [`Outbox`] keeps one writer task per peer) and only writes on
//!   that stream; what it receives arrives on the streams others dialed to
//!   its listener ([`serve`]). No pairing of streams, no race between two
//!   peers dialing each other at once.
//! - **Hello first.** The first frame on a stream is a
//!   [`Hello`] naming the sender; the listener
//!   checks it against the configuration and then hands every frame to the
//!   state machine as coming from that peer. A stream that starts with
//!   anything else, sends bytes that are not a frame, or speaks another
//!   protocol version is closed with the reason logged; the process goes
//!   on. (No authentication: the control network must be trusted.)
//! - **Loss is allowed.** The protocol is built for datagrams (DESIGN.md
//!   §6): everything is idempotent, retried or sequenced. So a writer that
//!   cannot connect drops what it was given, retries the connection with a
//!   back-off (50 ms doubling to 2 s), and a full queue drops new messages
//!   rather than blocking the state machine.
//! - **SWIM over UDP.** foca expects a lossy datagram service and measures
//!   the peer's liveness by it; a TCP stream would retransmit a probe long
//!   after it matters. Routing nodes receive SWIM on the UDP port of their
//!   `[[cluster.node]].address` and send it from there, so the source
//!   address names the sender.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use vipa_proto::ctl::{self, DecodeError, Hello, Message, HEADER_LEN};

use crate::cluster::{Peer, Transmit};

/// First delay before reconnecting.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest delay between connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Messages queued per peer before new ones are dropped.
pub const QUEUE: usize = 1024;
/// Largest UDP datagram read.
const DATAGRAM: usize = 65_536;

/// Counters of the transport, shared with the metrics.
#[derive(Debug, Default)]
pub struct NetStats {
    /// Frames received (streams and datagrams).
    pub frames_in: AtomicU64,
    /// Frames written or sent.
    pub frames_out: AtomicU64,
    /// Messages dropped: queue full, or no connection.
    pub dropped: AtomicU64,
    /// Streams closed because of what the peer sent.
    pub rejected: AtomicU64,
    /// Outgoing connections established.
    pub connects: AtomicU64,
    /// Per peer, the state of the streams to and from it (for the status
    /// page; a plain mutex: taken for a few instructions when a stream
    /// opens or closes and when the API asks).
    links: Mutex<BTreeMap<Peer, LinkState>>,
}

/// The streams to and from one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    /// This process's stream to the peer is connected.
    pub outgoing: bool,
    /// Streams from the peer open now.
    pub incoming: u32,
}

impl NetStats {
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn link(&self, peer: &Peer, change: impl FnOnce(&mut LinkState)) {
        // A poisoned lock only means a panic elsewhere mid-update of a
        // figure for people; keep counting.
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        change(links.entry(peer.clone()).or_default());
    }

    /// Every peer's streams, as now.
    pub fn links(&self) -> BTreeMap<Peer, LinkState> {
        self.links.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Who may speak to this process: turns a stream's hello into a peer, or
/// says why not.
pub type Admit = Arc<dyn Fn(&Hello) -> Result<Peer, String> + Send + Sync>;

/// Where to reach a peer: `None` when the configuration does not say.
pub type Resolve = Arc<dyn Fn(&Peer) -> Option<SocketAddr> + Send + Sync>;

/// Why a stream was closed.
#[derive(Debug, thiserror::Error)]
enum StreamEnd {
    #[error("closed by the peer")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("the first frame is a {0} message, not a hello; the peer is not a vipa node or agent of this version")]
    NoHello(u8),
    #[error("{0}")]
    Refused(String),
}

/// Reads one frame; [`StreamEnd::Closed`] at a clean end of stream.
async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Message, StreamEnd> {
    buf.clear();
    buf.resize(HEADER_LEN, 0);
    match stream.read_exact(&mut buf[..4]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(StreamEnd::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = ctl::frame_len(buf)?.unwrap_or(HEADER_LEN);
    stream.read_exact(&mut buf[4..HEADER_LEN]).await?;
    // Magic and version are checked before the body is waited for.
    if let Err(e @ (DecodeError::BadMagic { .. } | DecodeError::UnsupportedVersion { .. })) =
        ctl::decode(buf)
    {
        return Err(e.into());
    }
    buf.resize(len, 0);
    stream.read_exact(&mut buf[HEADER_LEN..]).await?;
    let (msg, _) = ctl::decode(buf)?;
    Ok(msg)
}

/// Accepts streams on `listener` for ever; hands `(peer, message)` to
/// `inbox`.
pub async fn serve(
    listener: TcpListener,
    admit: Admit,
    inbox: mpsc::Sender<(Peer, Message)>,
    stats: Arc<NetStats>,
) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accepting a control connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admit = Arc::clone(&admit);
        let inbox = inbox.clone();
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let end = read_stream(stream, &admit, &inbox, &stats).await;
            match end {
                StreamEnd::Closed => tracing::debug!(%remote, "control stream closed"),
                StreamEnd::Io(e) => tracing::debug!(%remote, "control stream ended: {e}"),
                e => {
                    NetStats::inc(&stats.rejected);
                    tracing::warn!(%remote, "closing the control stream from {remote}: {e}");
                }
            }
        });
    }
}

async fn read_stream(
    mut stream: TcpStream,
    admit: &Admit,
    inbox: &mpsc::Sender<(Peer, Message)>,
    stats: &NetStats,
) -> StreamEnd {
    let mut buf = Vec::new();
    let peer = match read_frame(&mut stream, &mut buf).await {
        Ok(Message::Hello(h)) => match admit(&h) {
            Ok(p) => p,
            Err(reason) => return StreamEnd::Refused(reason),
        },
        Ok(other) => return StreamEnd::NoHello(other.kind()),
        Err(e) => return e,
    };
    tracing::debug!(?peer, "control stream from {peer:?}");
    stats.link(&peer, |l| l.incoming += 1);
    let end = pump(&mut stream, &mut buf, &peer, inbox, stats).await;
    stats.link(&peer, |l| l.incoming = l.incoming.saturating_sub(1));
    end
}

/// Hands the admitted stream's frames to `inbox` until it ends.
async fn pump(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    peer: &Peer,
    inbox: &mpsc::Sender<(Peer, Message)>,
    stats: &NetStats,
) -> StreamEnd {
    loop {
        match read_frame(stream, buf).await {
            Ok(Message::Hello(_)) => {
                return StreamEnd::Refused("a second hello on the stream".into());
            }
            Ok(msg) => {
                NetStats::inc(&stats.frames_in);
                if inbox.send((peer.clone(), msg)).await.is_err() {
                    return StreamEnd::Closed;
                }
            }
            Err(e) => return e,
        }
    }
}

/// Receives SWIM datagrams on `socket`; `node_of` names the node a source
/// address belongs to.
pub async fn serve_udp(
    socket: Arc<UdpSocket>,
    node_of: Arc<dyn Fn(SocketAddr) -> Option<String> + Send + Sync>,
    inbox: mpsc::Sender<(Peer, Message)>,
    stats: Arc<NetStats>,
) {
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("receiving a SWIM datagram: {e}");
                continue;
            }
        };
        let Some(name) = node_of(from) else {
            NetStats::inc(&stats.rejected);
            tracing::debug!(%from, "datagram from {from}, which is no [[cluster.node]]; ignored");
            continue;
        };
        match ctl::decode(&buf[..n]) {
            Ok((msg @ Message::Swim(_), _)) => {
                NetStats::inc(&stats.frames_in);
                if inbox.send((Peer::Node(name), msg)).await.is_err() {
                    return;
                }
            }
            Ok((other, _)) => {
                NetStats::inc(&stats.rejected);
                tracing::debug!(%from, "kind {} message in a datagram from {name}; only SWIM travels over UDP", other.kind());
            }
            Err(e) => {
                NetStats::inc(&stats.rejected);
                tracing::warn!(%from, "datagram from {name} ({from}) ignored: {e}");
            }
        }
    }
}

/// Sends what the state machine asks: one writer task per peer, SWIM by
/// datagram.
pub struct Outbox {
    me: Hello,
    resolve: Resolve,
    udp: Option<Arc<UdpSocket>>,
    links: HashMap<Peer, mpsc::Sender<Message>>,
    stats: Arc<NetStats>,
}

impl Outbox {
    /// An outbox that introduces itself as `me`; SWIM goes out of `udp`.
    pub fn new(
        me: Hello,
        resolve: Resolve,
        udp: Option<Arc<UdpSocket>>,
        stats: Arc<NetStats>,
    ) -> Self {
        Outbox {
            me,
            resolve,
            udp,
            links: HashMap::new(),
            stats,
        }
    }

    /// Queues `t` (drops it, counted, if it cannot be sent).
    pub fn send(&mut self, t: Transmit) {
        let Some(addr) = (self.resolve)(&t.to) else {
            NetStats::inc(&self.stats.dropped);
            tracing::debug!(to = ?t.to, "no address for {:?}; message dropped", t.to);
            return;
        };
        if let (Message::Swim(_), Some(udp)) = (&t.message, &self.udp) {
            let mut frame = Vec::new();
            if let Err(e) = ctl::encode(&t.message, &mut frame) {
                tracing::warn!("cannot encode a SWIM message: {e}");
                return;
            }
            match udp.try_send_to(&frame, addr) {
                Ok(_) => NetStats::inc(&self.stats.frames_out),
                Err(e) => {
                    NetStats::inc(&self.stats.dropped);
                    tracing::debug!(%addr, "SWIM datagram to {addr} not sent: {e}");
                }
            }
            return;
        }
        let link = self.links.entry(t.to.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let me = self.me.clone();
            let stats = Arc::clone(&self.stats);
            let to = t.to.clone();
            tokio::spawn(write_link(to, addr, me, rx, stats));
            tx
        });
        if link.try_send(t.message).is_err() {
            NetStats::inc(&self.stats.dropped);
        }
    }
}

/// One peer's writer: connect (with back-off), hello, frames; on any error
/// drop the queue and reconnect. Ends when the outbox is dropped.
async fn write_link(
    to: Peer,
    addr: SocketAddr,
    me: Hello,
    mut rx: mpsc::Receiver<Message>,
    stats: Arc<NetStats>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut frame = Vec::new();
    loop {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
        let mut stream = match stream {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(?to, %addr, "cannot connect to {to:?} at {addr}: {e}; retrying in {backoff:?}");
                if !wait(&mut rx, &stats, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            Err(_) => {
                tracing::debug!(?to, %addr, "connecting to {to:?} at {addr} timed out; retrying in {backoff:?}");
                if !wait(&mut rx, &stats, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        NetStats::inc(&stats.connects);
        stats.link(&to, |l| l.outgoing = true);
        tracing::debug!(?to, %addr, "connected to {to:?} at {addr}");
        backoff = BACKOFF_MIN;
        let mut pending = Some(Message::Hello(me.clone()));
        loop {
            let msg = match pending.take() {
                Some(m) => m,
                None => match rx.recv().await {
                    Some(m) => m,
                    None => {
                        stats.link(&to, |l| l.outgoing = false);
                        return;
                    }
                },
            };
            frame.clear();
            if let Err(e) = ctl::encode(&msg, &mut frame) {
                tracing::warn!(?to, "cannot encode a kind {} message: {e}", msg.kind());
                continue;
            }
            if let Err(e) = stream.write_all(&frame).await {
                tracing::info!(?to, %addr, "control stream to {to:?} at {addr} lost: {e}; reconnecting");
                NetStats::inc(&stats.dropped);
                stats.link(&to, |l| l.outgoing = false);
                break;
            }
            NetStats::inc(&stats.frames_out);
        }
    }
}

/// Sleeps `delay`, dropping what arrives meanwhile; `false` when the outbox
/// is gone.
async fn wait(rx: &mut mpsc::Receiver<Message>, stats: &NetStats, delay: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(_) => NetStats::inc(&stats.dropped),
                None => return false,
            },
            _ = tokio::time::sleep_until(deadline) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn admit_nodes() -> Admit {
        Arc::new(|h: &Hello| match h {
            Hello::Node(n) if n == "fwd-b" => Ok(Peer::Node(n.clone())),
            other => Err(format!("{other:?} is not a node of this cluster")),
        })
    }

    async fn listener() -> (SocketAddr, mpsc::Receiver<(Peer, Message)>, Arc<NetStats>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(16);
        let stats = Arc::new(NetStats::default());
        tokio::spawn(serve(l, admit_nodes(), tx, Arc::clone(&stats)));
        (addr, rx, stats)
    }

    fn frame(m: &Message) -> Vec<u8> {
        let mut f = Vec::new();
        ctl::encode(m, &mut f).unwrap();
        f
    }

    async fn closed(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn hello_then_messages_reach_the_inbox_as_that_peer() {
        let (addr, mut rx, _) = listener().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&frame(&Message::Hello(Hello::Node("fwd-b".into()))))
            .await
            .unwrap();
        s.write_all(&frame(&Message::Swim(vec![1, 2, 3])))
            .await
            .unwrap();
        let (peer, msg) = rx.recv().await.unwrap();
        assert_eq!(peer, Peer::Node("fwd-b".into()));
        assert_eq!(msg, Message::Swim(vec![1, 2, 3]));
    }

    #[tokio::test]
    async fn garbage_an_unknown_version_or_no_hello_closes_the_stream_only() {
        let (addr, mut rx, stats) = listener().await;
        let mut bad_version = frame(&Message::Hello(Hello::Node("fwd-b".into())));
        bad_version[6] = 9;
        let no_hello = frame(&Message::Swim(vec![1]));
        let stranger = frame(&Message::Hello(Hello::Target(IpAddr::from([10, 0, 0, 1]))));
        for bytes in [
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            bad_version,
            no_hello,
            stranger,
        ] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&bytes).await.unwrap();
            assert!(closed(&mut s).await);
        }
        assert_eq!(stats.rejected.load(Ordering::Relaxed), 4);
        // Still serving.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&frame(&Message::Hello(Hello::Node("fwd-b".into()))))
            .await
            .unwrap();
        s.write_all(&frame(&Message::Swim(vec![7]))).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().1, Message::Swim(vec![7]));
    }

    #[tokio::test]
    async fn the_outbox_connects_late_and_introduces_itself() {
        // Reserve an address, let the outbox fail against it, then listen.
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let stats = Arc::new(NetStats::default());
        let mut out = Outbox::new(
            Hello::Node("fwd-b".into()),
            Arc::new(move |_| Some(addr)),
            None,
            Arc::clone(&stats),
        );
        let to = Peer::Node("fwd-a".into());
        out.send(Transmit {
            to: to.clone(),
            message: Message::Swim(vec![1]),
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let l = TcpListener::bind(addr).await.unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(serve(l, admit_nodes(), tx, Arc::new(NetStats::default())));
        // Keep sending until one arrives (earlier ones may be dropped).
        let got = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                out.send(Transmit {
                    to: to.clone(),
                    message: Message::Swim(vec![2]),
                });
                tokio::select! {
                    m = rx.recv() => return m,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(got.0, Peer::Node("fwd-b".into()));
        assert!(stats.connects.load(Ordering::Relaxed) >= 1);
    }
}
