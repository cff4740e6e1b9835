//! GRE encapsulation and the MTU check (DESIGN.md §4 steps 5–6).
//!
//! The header policy, in one place:
//!
//! * outer IPv4 or IPv6 by the **target's** family, + a 4-byte GRE header
//!   (RFC 2784: no checksum, key or sequence), protocol type 0x0800 / 0x86DD
//!   by the inner family;
//! * outer source = the node's tunnel address of that family, destination =
//!   the target; TTL / hop limit 64;
//! * DSCP copied from the inner header; ECN copied: RFC 6040 §4.1's normal
//!   mode, in which the outer ECN field is a copy of the inner one (the
//!   compatibility mode, which clears it, is not offered);
//! * IPv4 outer: DF copied from an inner IPv4 packet, set for an inner IPv6
//!   packet (IPv6 is never fragmented on the path); identification 0 with DF
//!   (RFC 6864 §4.1: the field "MUST NOT be used for any purpose other than
//!   fragmentation and reassembly" of atomic datagrams), a per-worker counter
//!   without it; a valid header checksum;
//! * IPv6 outer: flow label = the low 20 bits of the flow hash, so ECMP on
//!   the way to the target keeps a flow on one path (RFC 6438 §3);
//! * the inner packet is byte-for-byte what arrived: no TTL decrement;
//!   Ethernet padding after it is removed;
//! * the Ethernet header: the port's MAC as source, the next hop's MAC as
//!   destination (static, or resolved: see [`crate::neighbor`]), the 802.1Q
//!   tag of the arriving frame kept.
//!
//! MTU: inner length + overhead above the port MTU → with DF (or IPv6) an
//! ICMP fragmentation-needed / packet-too-big goes back to the client with
//! MTU = port MTU − overhead; without DF the packet is dropped and counted.

use std::net::IpAddr;

use vipa_proto::wire::{ethernet, ipv4, ipv6, EtherType};

use super::{reply, Verdict};
use crate::buf::PacketBuffer;
use crate::counters::{Counter, Counters};
use crate::tables::{Tables, OVERHEAD_V4, OVERHEAD_V6};

/// GRE protocol type of the inner packet (RFC 2784 §2.4: "the Ethernet
/// protocol type field of the payload").
const GRE_PROTO_IPV4: u16 = 0x0800;
const GRE_PROTO_IPV6: u16 = 0x86DD;
const OUTER_TTL: u8 = 64;
const IPPROTO_GRE: u8 = 47;

/// Encapsulates the flow packet in `buf` towards `target`.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn encapsulate<B: PacketBuffer>(
    tables: &Tables,
    port: usize,
    buf: &mut B,
    l2_len: usize,
    inner_v6: bool,
    target: u32,
    dst_mac: [u8; 6],
    hash: u64,
    ident: &mut u16,
    counters: &mut Counters,
) -> Verdict {
    let Some(t) = tables.targets.get(target as usize) else {
        return Verdict::Drop(Counter::DropNoTarget);
    };
    let p = &tables.ports[port];
    let data = buf.data();
    // Inner length, traffic class and DF from the inner header. Pass 1
    // checked the header, so these reads are in bounds.
    let (inner_len, dscp_ecn, df) = if inner_v6 {
        let ip = ipv6::Packet::new_unchecked(&data[l2_len..]);
        (
            ipv6::HEADER_LEN + ip.payload_len() as usize,
            ip.traffic_class(),
            true,
        )
    } else {
        let ip = ipv4::Packet::new_unchecked(&data[l2_len..]);
        (ip.total_len() as usize, ip.dscp_ecn(), ip.dont_frag())
    };
    let vlan = ethernet::Packet::new_unchecked(data).vlan_tag();
    let overhead = match t.address {
        IpAddr::V4(_) => OVERHEAD_V4,
        IpAddr::V6(_) => OVERHEAD_V6,
    };
    if inner_len + overhead > p.mtu {
        if !df {
            return Verdict::Drop(Counter::DropMtuNoDf);
        }
        return reply::too_big(
            tables,
            port,
            buf,
            l2_len,
            inner_v6,
            inner_len,
            p.mtu - overhead,
            counters,
        );
    }
    // Ethernet padding is not part of the packet.
    buf.truncate(l2_len + inner_len);
    if !buf.prepend(overhead) {
        return Verdict::Drop(Counter::DropNoBufferRoom);
    }
    let data = buf.data_mut();
    let outer_ethertype = match t.address {
        IpAddr::V4(_) => EtherType::Ipv4,
        IpAddr::V6(_) => EtherType::Ipv6,
    };
    write_ethernet(&mut data[..l2_len], dst_mac, p.mac, vlan, outer_ethertype);
    let gre_proto = if inner_v6 {
        GRE_PROTO_IPV6
    } else {
        GRE_PROTO_IPV4
    };
    let ip_start = l2_len;
    let gre_start = match (t.address, t.tunnel_source) {
        (IpAddr::V4(dst), IpAddr::V4(src)) => {
            let mut ip =
                ipv4::Packet::new_unchecked(&mut data[ip_start..ip_start + ipv4::HEADER_LEN]);
            let id = if df {
                0
            } else {
                *ident = ident.wrapping_add(1);
                *ident
            };
            ip.set_version(4);
            ip.set_header_len(ipv4::HEADER_LEN);
            ip.set_dscp_ecn(dscp_ecn);
            ip.set_total_len((ipv4::HEADER_LEN + 4 + inner_len) as u16);
            ip.set_ident(id);
            ip.clear_flags();
            ip.set_dont_frag(df);
            ip.set_hop_limit(OUTER_TTL);
            ip.set_next_header(IPPROTO_GRE);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            ip.fill_checksum();
            ip_start + ipv4::HEADER_LEN
        }
        (IpAddr::V6(dst), IpAddr::V6(src)) => {
            let mut ip =
                ipv6::Packet::new_unchecked(&mut data[ip_start..ip_start + ipv6::HEADER_LEN]);
            ip.set_version(6);
            ip.set_traffic_class(dscp_ecn);
            ip.set_flow_label((hash & 0xF_FFFF) as u32);
            ip.set_payload_len((4 + inner_len) as u16);
            ip.set_next_header(IPPROTO_GRE);
            ip.set_hop_limit(OUTER_TTL);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            ip_start + ipv6::HEADER_LEN
        }
        // Tables pair every target with a source of its family.
        _ => return Verdict::Drop(Counter::DropNoTarget),
    };
    // RFC 2784 §2: C (bit 0) = 0, Reserved0 = 0, Ver = 0, then the protocol type.
    data[gre_start..gre_start + 4].copy_from_slice(&[
        0,
        0,
        (gre_proto >> 8) as u8,
        gre_proto as u8,
    ]);
    counters.inc(Counter::Forwarded);
    if let Some(tc) = counters.targets.get_mut(target as usize) {
        tc.packets += 1;
        tc.bytes += inner_len as u64;
    }
    Verdict::Tx
}

/// Writes an Ethernet header of `out.len()` bytes (14, or 18 with `vlan`).
#[inline]
pub(super) fn write_ethernet(
    out: &mut [u8],
    dst: [u8; 6],
    src: [u8; 6],
    vlan: Option<u16>,
    ethertype: EtherType,
) {
    let repr = ethernet::Repr {
        src: ethernet::EthernetAddress(src),
        dst: ethernet::EthernetAddress(dst),
        vlan,
        ethertype,
    };
    let mut frame = ethernet::Packet::new_unchecked(out);
    repr.emit(&mut frame);
}
