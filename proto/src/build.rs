//! Whole frames from a few parameters: for tests, benchmarks and the demo
//! capture. The slow path — every frame is a fresh `Vec` built through the
//! wire `Repr`s and views, with every checksum filled.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::{
    arp, ethernet, icmpv4, icmpv6, ipv4, ipv6, tcp, udp, EtherType, EthernetAddress,
};

/// Builds Ethernet frames between two MACs, with IP header settings.
#[derive(Clone, Copy, Debug)]
pub struct FrameBuilder {
    /// Source MAC.
    pub src_mac: EthernetAddress,
    /// Destination MAC.
    pub dst_mac: EthernetAddress,
    /// 802.1Q tag control information, when tagged.
    pub vlan: Option<u16>,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// IPv4 don't-fragment flag.
    pub dont_frag: bool,
    /// IPv4 identification.
    pub ident: u16,
    /// IPv6 flow label.
    pub flow_label: u32,
}

impl FrameBuilder {
    /// Untagged frames, TTL 64, DF set, DSCP/ECN 0.
    pub fn new(src_mac: EthernetAddress, dst_mac: EthernetAddress) -> Self {
        FrameBuilder {
            src_mac,
            dst_mac,
            vlan: None,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            dont_frag: true,
            ident: 0,
            flow_label: 0,
        }
    }

    fn ethernet(&self, ethertype: EtherType, payload_len: usize) -> (Vec<u8>, usize) {
        let repr = ethernet::Repr {
            src: self.src_mac,
            dst: self.dst_mac,
            vlan: self.vlan,
            ethertype,
        };
        let l2 = repr.header_len();
        let mut frame = vec![0u8; l2 + payload_len];
        repr.emit(&mut ethernet::Packet::new_unchecked(&mut frame[..]));
        (frame, l2)
    }

    /// An IP packet in a frame: header by family, `l4` bytes as the payload
    /// (their checksum, if any, already filled by the caller's closure,
    /// which gets the payload buffer and both addresses).
    fn ip_frame(
        &self,
        src: IpAddr,
        dst: IpAddr,
        next_header: u8,
        l4_len: usize,
        fill: impl FnOnce(&mut [u8], IpAddr, IpAddr),
    ) -> Vec<u8> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let repr = ipv4::Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header,
                    payload_len: l4_len,
                    hop_limit: self.ttl,
                    dscp: self.dscp,
                    ecn: self.ecn,
                    dont_frag: self.dont_frag,
                };
                let (mut frame, l2) = self.ethernet(EtherType::Ipv4, repr.buffer_len());
                fill(&mut frame[l2 + ipv4::HEADER_LEN..], src, dst);
                let mut ip = ipv4::Packet::new_unchecked(&mut frame[l2..]);
                repr.emit(&mut ip);
                ip.set_ident(self.ident);
                ip.fill_checksum();
                frame
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let repr = ipv6::Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header,
                    payload_len: l4_len,
                    hop_limit: self.ttl,
                    dscp: self.dscp,
                    ecn: self.ecn,
                    flow_label: self.flow_label,
                };
                let (mut frame, l2) = self.ethernet(EtherType::Ipv6, repr.buffer_len());
                fill(&mut frame[l2 + ipv6::HEADER_LEN..], src, dst);
                repr.emit(&mut ipv6::Packet::new_unchecked(&mut frame[l2..]));
                frame
            }
            _ => panic!("FrameBuilder: source and destination of different families"),
        }
    }

    /// A TCP segment (`flags` from [`tcp::flags`]) with `payload`.
    pub fn tcp(
        &self,
        src: IpAddr,
        dst: IpAddr,
        src_port: u16,
        dst_port: u16,
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let repr = tcp::Repr {
            src_port,
            dst_port,
            seq_number: 0x0100_0000,
            ack_number: if flags & tcp::flags::ACK != 0 {
                0x0200_0000
            } else {
                0
            },
            flags,
            window: 64240,
            payload_len: payload.len(),
        };
        self.ip_frame(src, dst, tcp::PROTOCOL, repr.buffer_len(), |buf, s, d| {
            let mut p = tcp::Packet::new_unchecked(buf);
            repr.emit(&mut p);
            p.payload_mut()[..payload.len()].copy_from_slice(payload);
            fill_l4(
                &mut p,
                s,
                d,
                tcp::Packet::fill_checksum_v4,
                tcp::Packet::fill_checksum_v6,
            );
        })
    }

    /// A UDP datagram with `payload`.
    pub fn udp(
        &self,
        src: IpAddr,
        dst: IpAddr,
        src_port: u16,
        dst_port: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let repr = udp::Repr {
            src_port,
            dst_port,
            payload_len: payload.len(),
        };
        self.ip_frame(src, dst, udp::PROTOCOL, repr.buffer_len(), |buf, s, d| {
            let mut p = udp::Packet::new_unchecked(buf);
            repr.emit(&mut p);
            p.payload_mut()[..payload.len()].copy_from_slice(payload);
            fill_l4(
                &mut p,
                s,
                d,
                udp::Packet::fill_checksum_v4,
                udp::Packet::fill_checksum_v6,
            );
        })
    }

    /// An IP packet of any protocol with raw `payload` (no L4 checksum work).
    pub fn ip_raw(&self, src: IpAddr, dst: IpAddr, next_header: u8, payload: &[u8]) -> Vec<u8> {
        self.ip_frame(src, dst, next_header, payload.len(), |buf, _, _| {
            buf[..payload.len()].copy_from_slice(payload)
        })
    }

    /// An ICMP echo request.
    pub fn icmpv4_echo_request(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ident: u16,
        seq_no: u16,
        data: &[u8],
    ) -> Vec<u8> {
        let repr = icmpv4::Repr::EchoRequest {
            ident,
            seq_no,
            data_len: data.len(),
        };
        self.ip_frame(
            src.into(),
            dst.into(),
            icmpv4::PROTOCOL,
            repr.buffer_len(),
            |buf, _, _| {
                let mut p = icmpv4::Packet::new_unchecked(buf);
                p.data_mut()[..data.len()].copy_from_slice(data);
                repr.emit(&mut p);
                p.fill_checksum();
            },
        )
    }

    /// An ICMP destination-unreachable / fragmentation-needed (RFC 1191)
    /// quoting `quoted` (an IP packet, truncated as the sender likes).
    pub fn icmpv4_frag_needed(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        mtu: u16,
        quoted: &[u8],
    ) -> Vec<u8> {
        let repr = icmpv4::Repr::DstUnreachable {
            code: icmpv4::DstUnreachable::FragNeeded,
            next_hop_mtu: mtu,
            data_len: quoted.len(),
        };
        self.ip_frame(
            src.into(),
            dst.into(),
            icmpv4::PROTOCOL,
            repr.buffer_len(),
            |buf, _, _| {
                let mut p = icmpv4::Packet::new_unchecked(buf);
                p.data_mut()[..quoted.len()].copy_from_slice(quoted);
                repr.emit(&mut p);
                p.fill_checksum();
            },
        )
    }

    /// An ICMPv6 echo request.
    pub fn icmpv6_echo_request(
        &self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        ident: u16,
        seq_no: u16,
        data: &[u8],
    ) -> Vec<u8> {
        let len = icmpv6::HEADER_LEN + data.len();
        self.ip_frame(
            src.into(),
            dst.into(),
            icmpv6::PROTOCOL,
            len,
            |buf, _, _| {
                let mut p = icmpv6::Packet::new_unchecked(buf);
                p.data_mut()[..data.len()].copy_from_slice(data);
                let repr = icmpv6::Repr::EchoRequest {
                    ident,
                    seq_no,
                    data_len: data.len(),
                };
                repr.emit(&src, &dst, &mut p);
            },
        )
    }

    /// An ICMPv6 packet-too-big quoting `quoted`.
    pub fn icmpv6_packet_too_big(
        &self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        mtu: u32,
        quoted: &[u8],
    ) -> Vec<u8> {
        let len = icmpv6::HEADER_LEN + quoted.len();
        self.ip_frame(
            src.into(),
            dst.into(),
            icmpv6::PROTOCOL,
            len,
            |buf, _, _| {
                let mut p = icmpv6::Packet::new_unchecked(buf);
                p.data_mut()[..quoted.len()].copy_from_slice(quoted);
                let repr = icmpv6::Repr::PktTooBig {
                    mtu,
                    data_len: quoted.len(),
                };
                repr.emit(&src, &dst, &mut p);
            },
        )
    }

    /// A neighbour solicitation for `target` from `src` (the unspecified
    /// address for duplicate address detection), to the target's
    /// solicited-node multicast group, with a source link-layer option
    /// unless `src` is unspecified (RFC 4861 §4.3).
    pub fn neighbor_solicit(&self, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        let group = ipv6::solicited_node_multicast(&target);
        let o = group.octets();
        let b = FrameBuilder {
            dst_mac: EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]]),
            ttl: 255,
            ..*self
        };
        let repr = icmpv6::Repr::NeighborSolicit {
            target_addr: target,
            lladdr: (!src.is_unspecified()).then_some(self.src_mac),
        };
        b.ip_frame(
            src.into(),
            group.into(),
            icmpv6::PROTOCOL,
            repr.buffer_len(),
            |buf, _, _| {
                repr.emit(&src, &group, &mut icmpv6::Packet::new_unchecked(buf));
            },
        )
    }

    /// An ARP request (broadcast) asking who has `target`.
    pub fn arp_request(&self, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
        let repr = arp::Repr {
            operation: arp::Operation::Request,
            source_hardware_addr: self.src_mac,
            source_protocol_addr: sender,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        };
        let b = FrameBuilder {
            dst_mac: EthernetAddress::BROADCAST,
            ..*self
        };
        let (mut frame, l2) = b.ethernet(EtherType::Arp, repr.buffer_len());
        repr.emit(&mut arp::Packet::new_unchecked(&mut frame[l2..]));
        frame
    }
}

fn fill_l4<P>(
    p: &mut P,
    src: IpAddr,
    dst: IpAddr,
    v4: impl FnOnce(&mut P, &Ipv4Addr, &Ipv4Addr),
    v6: impl FnOnce(&mut P, &Ipv6Addr, &Ipv6Addr),
) {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => v4(p, &s, &d),
        (IpAddr::V6(s), IpAddr::V6(d)) => v6(p, &s, &d),
        _ => {}
    }
}

/// The IP packet inside an Ethernet frame (after one optional 802.1Q tag).
pub fn ip_packet(frame: &[u8]) -> &[u8] {
    match ethernet::Packet::new_checked(frame) {
        Ok(eth) => &frame[eth.header_len()..],
        Err(_) => &[],
    }
}
