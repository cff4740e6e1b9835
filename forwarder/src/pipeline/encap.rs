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
//!   without it; a valid header checksum, or 0 when the checksum is left
//!   to the device (a port whose device offers it, and a buffer that
//!   carries the request: [`PacketBuffer::request_ipv4_checksum`], the
//!   `dpdk` backend);
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
use crate::tables::{OuterV4, Tables, IPPROTO_GRE, OUTER_TTL, OVERHEAD_V4, OVERHEAD_V6};

/// GRE protocol type of the inner packet (RFC 2784 §2.4: "the Ethernet
/// protocol type field of the payload").
pub(super) const GRE_PROTO_IPV4: u16 = 0x0800;
const GRE_PROTO_IPV6: u16 = 0x86DD;

/// What encapsulation needs from the inner IP header (pass 1 reads it).
#[derive(Clone, Copy, Debug)]
pub(super) struct Inner {
    /// The inner packet's length: IPv4 total length, or IPv6 40 + payload length.
    pub len: u32,
    /// IPv4 DSCP/ECN byte or IPv6 traffic class.
    pub dscp_ecn: u8,
    /// IPv4 DF; true for IPv6.
    pub df: bool,
}

/// Encapsulates the flow packet in `buf` towards `target`, counted for
/// service slot `service` ([`crate::tables::UNCOUNTED_SERVICE`]: not
/// counted per service); `port_cksum_offload`: the device of `port`, which
/// the frame leaves by, computes IPv4 header checksums.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn encapsulate<B: PacketBuffer>(
    tables: &Tables,
    port: usize,
    port_cksum_offload: bool,
    buf: &mut B,
    l2_len: usize,
    inner_v6: bool,
    inner: Inner,
    target: u32,
    service: u32,
    dst_mac: [u8; 6],
    hash: u64,
    ident: &mut u16,
    counters: &mut Counters,
) -> Verdict {
    let Some(t) = tables.targets.get(target as usize) else {
        return Verdict::Drop(Counter::DropNoTarget);
    };
    let p = &tables.ports[port];
    let (inner_len, dscp_ecn, df) = (inner.len as usize, inner.dscp_ecn, inner.df);
    // Pass 1 gave an 18-byte header only to a frame with one 802.1Q tag.
    let vlan = if l2_len == ethernet::HEADER_LEN {
        None
    } else {
        ethernet::Packet::new_unchecked(buf.data()).vlan_tag()
    };
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
    // The outer IPv4 header's checksum: the device's when it takes it.
    let cksum_offload = port_cksum_offload
        && t.outer_v4.is_some()
        && buf.request_ipv4_checksum(l2_len, ipv4::HEADER_LEN);
    let data = buf.data_mut();
    let outer_ethertype = match t.address {
        IpAddr::V4(_) => EtherType::Ipv4,
        IpAddr::V6(_) => EtherType::Ipv6,
    };
    if vlan.is_none() && l2_len == ethernet::HEADER_LEN {
        write_ethernet_untagged(&mut data[..l2_len], dst_mac, p.mac, outer_ethertype);
    } else {
        write_ethernet(&mut data[..l2_len], dst_mac, p.mac, vlan, outer_ethertype);
    }
    let gre_proto = if inner_v6 {
        GRE_PROTO_IPV6
    } else {
        GRE_PROTO_IPV4
    };
    let ip_start = l2_len;
    match (&t.outer_v4, t.address, t.tunnel_source) {
        (Some(outer), _, _) => {
            let id = if df {
                0
            } else {
                *ident = ident.wrapping_add(1);
                *ident
            };
            let total_len = (ipv4::HEADER_LEN + 4 + inner_len) as u16;
            let Ok(out) =
                <&mut [u8; OVERHEAD_V4]>::try_from(&mut data[ip_start..ip_start + OVERHEAD_V4])
            else {
                return Verdict::Drop(Counter::DropNoBufferRoom);
            };
            write_outer_v4(
                out,
                outer,
                dscp_ecn,
                total_len,
                id,
                df,
                gre_proto,
                cksum_offload,
            );
        }
        (None, IpAddr::V6(dst), IpAddr::V6(src)) => {
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
            let gre_start = ip_start + ipv6::HEADER_LEN;
            // RFC 2784 §2: C (bit 0) = 0, Reserved0 = 0, Ver = 0, then the protocol type.
            data[gre_start..gre_start + 4].copy_from_slice(&[
                0,
                0,
                (gre_proto >> 8) as u8,
                gre_proto as u8,
            ]);
        }
        // Tables pair every target with a source of its family (and build
        // the outer IPv4 header of every IPv4 target).
        _ => return Verdict::Drop(Counter::DropNoTarget),
    }
    sent_to_target(counters, service, target, inner_len);
    Verdict::Tx
}

/// Where a packet is counted as sent to a target: every encapsulated frame
/// of the general path here, every one of the fast path ([`super::fast`])
/// in [`sent_to_target_uncounted`] and the burst loop.
#[inline(always)]
pub(super) fn sent_to_target(counters: &mut Counters, service: u32, target: u32, inner_len: usize) {
    counters.inc(Counter::Forwarded);
    sent_to_target_uncounted(counters, service, target, inner_len);
}

/// [`sent_to_target`] without [`Counter::Forwarded`]: the fast path's,
/// whose forwarded packets the burst loop counts
/// ([`super::Pipeline::process_burst`]).
#[inline(always)]
pub(super) fn sent_to_target_uncounted(
    counters: &mut Counters,
    service: u32,
    target: u32,
    inner_len: usize,
) {
    if let Some(tc) = counters.targets.get_mut(target as usize) {
        tc.packets += 1;
        tc.bytes += inner_len as u64;
    }
    counters.add_service_target(service, target, inner_len as u64);
}

/// Writes the outer IPv4 header and the GRE header (24 bytes) from the
/// target's pre-built constant part and the per-packet fields; the header
/// checksum is the constant part's sum plus the per-packet words (see
/// [`OuterV4`]), never read back from the buffer. The bytes are exactly
/// those of setting each field and computing the checksum over the header.
///
/// With `cksum_offload` (the device computes the checksum on transmission)
/// the checksum field is 0 and no sum is computed: 0 is what DPDK's own
/// transmit preparation (`rte_eth_tx_prepare`) writes there for
/// `RTE_MBUF_F_TX_IP_CKSUM`, and what the DPDK mbuf guide asks for, since
/// some devices add the field's content into the sum they insert.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn write_outer_v4(
    out: &mut [u8; OVERHEAD_V4],
    outer: &OuterV4,
    dscp_ecn: u8,
    total_len: u16,
    id: u16,
    df: bool,
    gre_proto: u16,
    cksum_offload: bool,
) {
    // Bytes 8–15 with a zero checksum, which write_outer_v4_varying fills.
    out[8..16].copy_from_slice(&outer.ttl_proto_src.to_be_bytes());
    // RFC 2784 §2: C (bit 0) = 0, Reserved0 = 0, Ver = 0, then the protocol type.
    let w2 = (u64::from(outer.dst) << 32) | u64::from(gre_proto);
    out[16..24].copy_from_slice(&w2.to_be_bytes());
    write_outer_v4_varying(out, outer.sum, dscp_ecn, total_len, id, df, cksum_offload);
}

/// The per-packet part of [`write_outer_v4`]: bytes 0–7 of the outer IPv4
/// header (version and IHL, DSCP/ECN, total length, identification, flags
/// and fragment offset) and the header checksum (bytes 10–11) from `sum`,
/// the unfolded sum of the constant words ([`OuterV4::sum`]). Every other
/// byte of `out` is left as it is: the constant part, written once per
/// packet by [`write_outer_v4`] or copied from a pre-built header by the
/// fast path.
#[inline(always)]
pub(super) fn write_outer_v4_varying(
    out: &mut [u8; OVERHEAD_V4],
    sum: u32,
    dscp_ecn: u8,
    total_len: u16,
    id: u16,
    df: bool,
    cksum_offload: bool,
) {
    // RFC 791: flags are the top 3 bits of bytes 6–7 (DF = 0x4000), the
    // fragment offset the rest (0).
    let flags: u16 = if df { 0x4000 } else { 0 };
    let checksum = if cksum_offload {
        0
    } else {
        let mut sum = sum + u32::from(dscp_ecn) + u32::from(total_len) + u32::from(id);
        sum += u32::from(flags);
        // The sum of at most eleven 16-bit words fits 20 bits: two folds.
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        !(sum as u16)
    };
    let w0 = (0x45u64 << 56)
        | (u64::from(dscp_ecn) << 48)
        | (u64::from(total_len) << 32)
        | (u64::from(id) << 16)
        | u64::from(flags);
    out[0..8].copy_from_slice(&w0.to_be_bytes());
    out[10..12].copy_from_slice(&checksum.to_be_bytes());
}

/// Writes a 14-byte Ethernet header without a tag.
#[inline(always)]
fn write_ethernet_untagged(out: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: EtherType) {
    if let Ok(out) = <&mut [u8; ethernet::HEADER_LEN]>::try_from(out) {
        out[0..6].copy_from_slice(&dst);
        out[6..12].copy_from_slice(&src);
        out[12..14].copy_from_slice(&u16::from(ethertype).to_be_bytes());
    }
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// The outer header field by field, checksum computed over the header:
    /// what [`write_outer_v4`] must equal byte for byte.
    fn reference(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        dscp_ecn: u8,
        total_len: u16,
        id: u16,
        df: bool,
        gre_proto: u16,
    ) -> [u8; OVERHEAD_V4] {
        let mut out = [0xAAu8; OVERHEAD_V4];
        let mut ip = ipv4::Packet::new_unchecked(&mut out[..ipv4::HEADER_LEN]);
        ip.set_version(4);
        ip.set_header_len(ipv4::HEADER_LEN);
        ip.set_dscp_ecn(dscp_ecn);
        ip.set_total_len(total_len);
        ip.set_ident(id);
        ip.clear_flags();
        ip.set_dont_frag(df);
        ip.set_hop_limit(OUTER_TTL);
        ip.set_next_header(IPPROTO_GRE);
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.fill_checksum();
        out[20..24].copy_from_slice(&[0, 0, (gre_proto >> 8) as u8, gre_proto as u8]);
        out
    }

    #[test]
    fn outer_v4_template_matches_a_full_header_computation() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut cases = vec![
            // Extremes of every field, and sums that fold to 0xFFFF.
            (
                Ipv4Addr::new(0, 0, 0, 0),
                Ipv4Addr::new(0, 0, 0, 0),
                0,
                0,
                0,
                false,
            ),
            (
                Ipv4Addr::BROADCAST,
                Ipv4Addr::BROADCAST,
                0xff,
                0xffff,
                0xffff,
                true,
            ),
            (
                Ipv4Addr::new(10, 10, 0, 1),
                Ipv4Addr::new(10, 20, 0, 11),
                0,
                64,
                0,
                true,
            ),
        ];
        for _ in 0..100_000 {
            let r = next();
            let r2 = next();
            cases.push((
                Ipv4Addr::from((r >> 32) as u32),
                Ipv4Addr::from(r as u32),
                (r2 >> 56) as u8,
                (r2 >> 40) as u16,
                (r2 >> 24) as u16,
                r2 & 1 == 1,
            ));
        }
        for (src, dst, dscp_ecn, total_len, id, df) in cases {
            for gre_proto in [GRE_PROTO_IPV4, GRE_PROTO_IPV6] {
                let mut out = [0x55u8; OVERHEAD_V4];
                write_outer_v4(
                    &mut out,
                    &OuterV4::new(src, dst),
                    dscp_ecn,
                    total_len,
                    id,
                    df,
                    gre_proto,
                    false,
                );
                assert_eq!(
                    out,
                    reference(src, dst, dscp_ecn, total_len, id, df, gre_proto),
                    "{src} -> {dst} tos {dscp_ecn} len {total_len} id {id} df {df}"
                );
                assert_eq!(
                    vipa_proto::wire::checksum::data(&out[..ipv4::HEADER_LEN]),
                    0xffff,
                    "a valid header sums to 0xFFFF"
                );
                // Offloaded: the same header with checksum 0.
                let mut off = [0x55u8; OVERHEAD_V4];
                write_outer_v4(
                    &mut off,
                    &OuterV4::new(src, dst),
                    dscp_ecn,
                    total_len,
                    id,
                    df,
                    gre_proto,
                    true,
                );
                out[10..12].fill(0);
                assert_eq!(off, out, "offloaded: checksum 0, the rest unchanged");
            }
        }
    }
}
