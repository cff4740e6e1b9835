//! The common case in one read: an untagged Ethernet frame with an IPv4
//! header without options, not a fragment, carrying TCP or UDP to a
//! service of a VIPA.
//!
//! [`classify_v4`] reads the first 38 bytes of the frame (Ethernet 14, IPv4
//! 20, the two ports 4) at fixed offsets after a single bounds check, and
//! returns exactly the [`FlowMeta`] that the general classification
//! ([`super::Pipeline::classify`]) returns for such a frame. Anything else —
//! an 802.1Q tag, ARP, IPv6, options, a fragment, ICMP, a short or
//! inconsistent header, a destination that is not a VIPA, a port that is
//! not a service — gets `None`, and the general path decides, drops and
//! counts as it always did: the fast path only ever says "this is an
//! ordinary flow packet", never "drop".
//!
//! The conditions, each the general path's for the same outcome:
//!
//! * EtherType 0x0800 at bytes 12–13 (an 802.1Q tag is 0x8100 there);
//! * byte 14 = 0x45: version 4 and IHL 5 (RFC 791: "Internet Header
//!   Length is the length of the internet header in 32 bit words"; 5 = no
//!   options), which `ipv4::Packet::check_len` and the version and option
//!   tests accept;
//! * total length ≥ 20 + the transport header (TCP 20, UDP 8: what
//!   [`super::ports`] asks of the payload) and ≤ the frame after Ethernet
//!   (`check_len`; what follows is Ethernet padding);
//! * flags/fragment offset & 0x3FFF = 0: neither MF nor an offset (RFC 791:
//!   a fragment has one or the other), as `is_fragment`;
//! * protocol 6 or 17; the destination a VIPA, the destination port one of
//!   its services (one probe of [`crate::tables::ServicesV4`], which
//!   answers as the general path's VIPA and service scans do).

use vipa_proto::wire::ipv4;

use super::encap;
use super::{FlowMeta, Pipeline, Verdict, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN};
use crate::buf::PacketBuffer;
use crate::counters::Counter;
use crate::flow::FlowTable;
use crate::tables::{FastV4, OuterV4, Tables, OVERHEAD_V4};

/// Bytes the fast path reads: Ethernet (14) + IPv4 without options (20) +
/// source and destination port (4).
const PREFIX: usize = 14 + 20 + 4;

/// The flow facts of an ordinary IPv4 TCP/UDP packet to a VIPA service,
/// `None` for anything else (see the module docs).
#[inline(always)]
pub(super) fn classify_v4(tables: &Tables, flows: &FlowTable, data: &[u8]) -> Option<FlowMeta> {
    let h: &[u8; PREFIX] = data.get(..PREFIX)?.try_into().ok()?;
    let be16 = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
    if be16(12) != 0x0800 || h[14] != 0x45 {
        return None;
    }
    let total = usize::from(be16(16));
    let proto = h[23];
    let l4_min = match proto {
        PROTO_TCP => 20,
        PROTO_UDP => 8,
        _ => return None,
    };
    let flags_offset = be16(20);
    if total < 20 + l4_min || 14 + total > data.len() || flags_offset & 0x3FFF != 0 {
        return None;
    }
    let dst = [h[30], h[31], h[32], h[33]];
    let dport = be16(36);
    let (vipa, slot) = tables.services_v4.get(dst, proto, dport)?;
    let src = [h[26], h[27], h[28], h[29]];
    Some(FlowMeta {
        sig: flows.signature_v4(src, dst, proto, be16(34), dport),
        vipa,
        slot,
        l2_len: 14,
        v6: false,
        icmp_error: false,
        // TCP: the header is whole (checked above), so byte 13 is there.
        syn: proto == PROTO_TCP
            && data
                .get(14 + 20 + 13)
                .is_some_and(|&f| f & (TCP_SYN | TCP_ACK) == TCP_SYN),
        inner_len: total as u32,
        dscp_ecn: h[15],
        df: flags_offset & 0x4000 != 0,
    })
}

/// [`FastV4::hdr`]: the first 38 bytes of a frame to `dst` from `src`
/// encapsulating an untagged IPv4 packet as [`encap::encapsulate`] writes
/// them, with the per-packet fields ([`encap::write_outer_v4_varying`]'s)
/// zero.
pub(crate) fn fast_header_v4(
    dst: [u8; 6],
    src: [u8; 6],
    outer: &OuterV4,
) -> [u8; 14 + OVERHEAD_V4] {
    let mut hdr = [0u8; 14 + OVERHEAD_V4];
    hdr[..6].copy_from_slice(&dst);
    hdr[6..12].copy_from_slice(&src);
    hdr[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    if let Ok(ip) = <&mut [u8; OVERHEAD_V4]>::try_from(&mut hdr[14..]) {
        encap::write_outer_v4(ip, outer, 0, 0, 0, false, encap::GRE_PROTO_IPV4, true);
    }
    hdr
}

impl Pipeline {
    /// Pass 2 of an ordinary IPv4 packet (`m` from [`classify_v4`]: an
    /// untagged frame, not an ICMP error) whose flow the table knows (`target`), when the
    /// tables' fast entry for (`port`, `target`) exists (an IPv4 target
    /// that keeps its flows), the packet fits the MTU and the next hop's MAC
    /// is static or fresh: encapsulates and returns the verdict. `None`
    /// (nothing changed) for anything else: the general path goes on from
    /// the same lookup.
    ///
    /// The frame is what [`encap::encapsulate`] makes of it, with the same
    /// counters: the general path's order of checks (target kept, next hop,
    /// MTU, headroom) with the answers known in advance.
    #[inline(always)]
    pub(super) fn forward_fast<B: PacketBuffer>(
        &mut self,
        port: usize,
        buf: &mut B,
        m: &FlowMeta,
        target: u32,
        now: u32,
    ) -> Option<Verdict> {
        debug_assert!(m.l2_len == 14 && !m.v6 && !m.icmp_error);
        let f = self.tables.fast_entry(port, target)?;
        let inner_len = m.inner_len;
        // Also the test of an entry the fast path does not serve
        // (FastV4::NONE: max_inner 0).
        if inner_len > f.max_inner {
            return None;
        }
        let resolved = if f.resolve != FastV4::STATIC {
            Some(self.neighbors.fresh(f.resolve as usize, now)?)
        } else {
            None
        };
        // Counter::FlowTableHits and Counter::Forwarded: the burst loop
        // counts them for every `Some(Verdict::Tx)`, once per burst.
        // Ethernet padding is not part of the packet.
        let cksum_offload =
            self.ipv4_checksum_offload(port) && buf.request_ipv4_checksum(14, ipv4::HEADER_LEN);
        // The frame then holds the outer headers and more: only the
        // headroom can be missing.
        let Some(hdr) =
            buf.reframe_head::<{ 14 + OVERHEAD_V4 }>(OVERHEAD_V4, 14 + inner_len as usize)
        else {
            self.counters.inc(Counter::FlowTableHits);
            return Some(Verdict::Drop(Counter::DropNoBufferRoom));
        };
        *hdr = f.hdr;
        if let Some(mac) = resolved {
            hdr[..6].copy_from_slice(&mac);
        }
        let df = m.df;
        let id = if df {
            0
        } else {
            self.ident = self.ident.wrapping_add(1);
            self.ident
        };
        if let Some(ip_out) = hdr.last_chunk_mut::<OVERHEAD_V4>() {
            encap::write_outer_v4_varying(
                ip_out,
                f.sum,
                m.dscp_ecn,
                (OVERHEAD_V4 as u32 + inner_len) as u16,
                id,
                df,
                cksum_offload,
            );
        }
        encap::sent_to_target_uncounted(&mut self.counters, m.slot, target, inner_len as usize);
        Some(Verdict::Tx)
    }
}
