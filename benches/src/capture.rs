//! The demo capture: realistic traffic towards the example configuration's
//! VIPAs, plus everything the pipeline must answer, hand off or drop.
//!
//! Deterministic: the same seed gives the same bytes. Per-flow packet order
//! is kept while flows interleave at random, as on a real link.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use vipa_proto::build::{ip_packet, FrameBuilder};
use vipa_proto::wire::tcp::flags;
use vipa_proto::wire::EthernetAddress;

/// What the capture contains, for the narration.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CaptureSummary {
    /// Frames written.
    pub frames: usize,
    /// TCP flows (IPv4 + IPv6).
    pub tcp_flows: usize,
    /// UDP flows (IPv4 + IPv6).
    pub udp_flows: usize,
    /// Special frames (ARP, ping, ICMP errors, oversized, garbage), by name.
    pub specials: Vec<(String, usize)>,
}

/// Parameters of the demo capture.
#[derive(Clone, Debug)]
pub struct CaptureSpec {
    /// IPv4 VIPA.
    pub vipa4: Ipv4Addr,
    /// IPv6 VIPA.
    pub vipa6: Ipv6Addr,
    /// The forwarder port's MAC (destination of client traffic).
    pub port_mac: EthernetAddress,
    /// TCP flows over IPv4; IPv6 gets a third as many.
    pub tcp_flows_v4: usize,
    /// UDP flows over IPv4; IPv6 gets a third as many.
    pub udp_flows_v4: usize,
    /// RNG seed.
    pub seed: u64,
}

impl Default for CaptureSpec {
    /// Matches `examples/vipa.toml`.
    fn default() -> Self {
        CaptureSpec {
            vipa4: Ipv4Addr::new(192, 0, 2, 10),
            vipa6: "2001:db8::10".parse().unwrap_or(Ipv6Addr::LOCALHOST),
            port_mac: EthernetAddress([0x02, 0, 0, 0, 0x0a, 0x01]),
            tcp_flows_v4: 3000,
            udp_flows_v4: 900,
            seed: 0x5EED,
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const ROUTER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x0a, 0xfe]);

/// Generates the capture's frames, in order.
pub fn frames(spec: &CaptureSpec) -> (Vec<Vec<u8>>, CaptureSummary) {
    let mut rng = Rng(spec.seed | 1);
    let b = FrameBuilder::new(ROUTER_MAC, spec.port_mac);
    let mut flows: Vec<Vec<Vec<u8>>> = Vec::new();
    let services_tcp = [80u16, 443];
    let client4 = |i: usize| Ipv4Addr::new(198, 51, 100 + (i / 250 % 2) as u8, 1 + (i % 250) as u8);
    let client6 =
        |i: usize| Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, (i >> 16) as u16, i as u16 + 1);
    let v6_tcp = spec.tcp_flows_v4 / 3;
    let v6_udp = spec.udp_flows_v4 / 3;

    let tcp_flow = |rng: &mut Rng, src: IpAddr, dst: IpAddr, sport: u16, dport: u16| {
        let mut pkts = vec![
            b.tcp(src, dst, sport, dport, flags::SYN, &[]),
            b.tcp(src, dst, sport, dport, flags::ACK, &[]),
        ];
        let segments = 1 + rng.below(6) as usize;
        for _ in 0..segments {
            let len = 40 + rng.below(1300) as usize;
            pkts.push(b.tcp(
                src,
                dst,
                sport,
                dport,
                flags::ACK | flags::PSH,
                &vec![0x61; len],
            ));
        }
        pkts.push(b.tcp(src, dst, sport, dport, flags::FIN | flags::ACK, &[]));
        pkts
    };
    for i in 0..spec.tcp_flows_v4 {
        let sport = 20000 + rng.below(40000) as u16;
        let dport = services_tcp[i % 2];
        flows.push(tcp_flow(
            &mut rng,
            client4(i).into(),
            spec.vipa4.into(),
            sport,
            dport,
        ));
    }
    for i in 0..v6_tcp {
        let sport = 20000 + rng.below(40000) as u16;
        let dport = services_tcp[i % 2];
        flows.push(tcp_flow(
            &mut rng,
            client6(i).into(),
            spec.vipa6.into(),
            sport,
            dport,
        ));
    }
    let udp_flow = |rng: &mut Rng, src: IpAddr, dst: IpAddr, sport: u16| {
        let n = 1 + rng.below(3) as usize;
        (0..n)
            .map(|_| {
                b.udp(
                    src,
                    dst,
                    sport,
                    53,
                    &dns_query(rng.next() as u16, rng.below(1000)),
                )
            })
            .collect::<Vec<_>>()
    };
    for i in 0..spec.udp_flows_v4 {
        let sport = 1024 + rng.below(60000) as u16;
        flows.push(udp_flow(
            &mut rng,
            client4(i + 7).into(),
            spec.vipa4.into(),
            sport,
        ));
    }
    for i in 0..v6_udp {
        let sport = 1024 + rng.below(60000) as u16;
        flows.push(udp_flow(
            &mut rng,
            client6(i + 7).into(),
            spec.vipa6.into(),
            sport,
        ));
    }

    // Interleave flows, keeping each flow's order.
    let mut cursors: Vec<usize> = vec![0; flows.len()];
    let mut live: Vec<usize> = (0..flows.len()).collect();
    let mut out = Vec::new();
    while !live.is_empty() {
        let k = rng.below(live.len() as u64) as usize;
        let f = live[k];
        out.push(flows[f][cursors[f]].clone());
        cursors[f] += 1;
        if cursors[f] == flows[f].len() {
            live.swap_remove(k);
        }
    }

    // The specials, spread through the capture.
    let mut specials: Vec<(&str, Vec<u8>)> = Vec::new();
    let client = Ipv4Addr::new(198, 51, 100, 77);
    let c6: Ipv6Addr = "2001:db8:1::77".parse().unwrap_or(Ipv6Addr::LOCALHOST);
    specials.push((
        "arp_request_for_vipa",
        b.arp_request(Ipv4Addr::new(192, 0, 2, 1), spec.vipa4),
    ));
    specials.push((
        "arp_request_other",
        b.arp_request(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 99)),
    ));
    specials.push((
        "neighbor_solicit_for_vipa",
        b.neighbor_solicit(c6, spec.vipa6),
    ));
    specials.push((
        "ping_vipa4",
        b.icmpv4_echo_request(client, spec.vipa4, 0x1234, 1, b"vipa demo ping payload."),
    ));
    specials.push((
        "ping_vipa6",
        b.icmpv6_echo_request(c6, spec.vipa6, 0x1234, 1, b"vipa demo ping payload."),
    ));
    // A router on the way back to a client says a reply of a live flow was
    // too big: the quote is the target's reply (VIPA:80 → client).
    let live_client = client4(0);
    let first_syn = &flows[0][0];
    let live_sport = u16::from_be_bytes([first_syn[34], first_syn[35]]);
    let reply = b.tcp(
        spec.vipa4.into(),
        live_client.into(),
        80,
        live_sport,
        flags::ACK,
        &[0; 1400],
    );
    let quote = &ip_packet(&reply)[..28];
    specials.push((
        "icmp_frag_needed_for_live_flow",
        b.icmpv4_frag_needed(Ipv4Addr::new(203, 0, 113, 1), spec.vipa4, 1400, quote),
    ));
    // A client sends a full-size segment with DF: too big for the tunnel.
    specials.push((
        "oversized_df",
        b.tcp(
            client.into(),
            spec.vipa4.into(),
            40001,
            80,
            flags::ACK,
            &[0x55; 1460],
        ),
    ));
    let mut no_df = b;
    no_df.dont_frag = false;
    specials.push((
        "oversized_no_df",
        no_df.udp(client.into(), spec.vipa4.into(), 40002, 53, &[0x55; 1472]),
    ));
    specials.push((
        "oversized_v6",
        b.tcp(
            c6.into(),
            spec.vipa6.into(),
            40003,
            443,
            flags::ACK,
            &[0x55; 1440],
        ),
    ));
    specials.push((
        "not_a_service",
        b.tcp(client.into(), spec.vipa4.into(), 40004, 22, flags::SYN, &[]),
    ));
    specials.push((
        "not_a_vipa",
        b.tcp(
            client.into(),
            Ipv4Addr::new(192, 0, 2, 50).into(),
            40005,
            80,
            flags::SYN,
            &[],
        ),
    ));
    // IPv4 with options (IHL 6, a NOP option word) and a fragment.
    let mut opts = b.tcp(client.into(), spec.vipa4.into(), 40006, 80, flags::SYN, &[]);
    opts.splice(34..34, [1u8, 1, 1, 0]);
    opts[14] = 0x46;
    let total = (opts.len() - 14) as u16;
    opts[16..18].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_checksum(&mut opts[14..]);
    specials.push(("ipv4_options", opts));
    let mut frag = b.udp(client.into(), spec.vipa4.into(), 40007, 53, &[0; 64]);
    frag[20] |= 0x20; // MF
    fix_ipv4_checksum(&mut frag[14..]);
    specials.push(("ipv4_fragment", frag));
    // Garbage: truncated frames, random bytes, an unknown EtherType.
    specials.push(("garbage_short", vec![0xde, 0xad, 0xbe, 0xef]));
    let mut trunc = b.tcp(client.into(), spec.vipa4.into(), 40008, 80, flags::SYN, &[]);
    trunc.truncate(30);
    specials.push(("garbage_truncated_ipv4", trunc));
    let random: Vec<u8> = (0..90).map(|_| rng.next() as u8).collect();
    specials.push(("garbage_random", random));
    let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e];
    lldp.extend_from_slice(&ROUTER_MAC.0);
    lldp.extend_from_slice(&[0x88, 0xcc]);
    lldp.extend_from_slice(&[0; 46]);
    specials.push(("lldp_other_ethertype", lldp));

    let mut summary = CaptureSummary {
        tcp_flows: spec.tcp_flows_v4 + v6_tcp,
        udp_flows: spec.udp_flows_v4 + v6_udp,
        ..CaptureSummary::default()
    };
    let step = out.len() / (specials.len() + 1);
    for (i, (name, frame)) in specials.into_iter().enumerate() {
        // Keep the frag-needed after its flow's first packets.
        let at = (step * (i + 1)).min(out.len());
        out.insert(at, frame);
        summary.specials.push((name.to_owned(), 1));
    }
    summary.frames = out.len();
    (out, summary)
}

/// A DNS query (RFC 1035 §4.1) for `hostN.example.com`, type A.
fn dns_query(id: u16, n: u64) -> Vec<u8> {
    let mut q = Vec::with_capacity(40);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    let host = format!("host{n}");
    for label in [host.as_str(), "example", "com"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, QTYPE A, QCLASS IN
    q
}

fn fix_ipv4_checksum(ip: &mut [u8]) {
    let mut p = vipa_proto::wire::ipv4::Packet::new_unchecked(ip);
    p.fill_checksum();
}

/// Writes frames to a pcap, 10 µs apart from a fixed start time.
pub fn write_pcap(mut w: impl Write, frames: &[Vec<u8>]) -> anyhow::Result<()> {
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        snaplen: 65535,
        ..PcapHeader::default()
    };
    // Write through a buffer we own so `w` may be any writer.
    let mut buf = Vec::new();
    {
        let mut pw = PcapWriter::with_header(&mut buf, header)?;
        let start = Duration::from_secs(1_700_000_000);
        for (i, f) in frames.iter().enumerate() {
            let ts = start + Duration::from_micros(10 * i as u64);
            pw.write_packet(&PcapPacket::new(ts, f.len() as u32, f))?;
        }
    }
    w.write_all(&buf)?;
    Ok(())
}
