//! What the node answers itself, built in place in the received buffer:
//! ARP replies and neighbour advertisements for owned VIPAs, echo replies
//! from a VIPA, and ICMP "too big" errors to clients.
//!
//! Every answer leaves from the port the question came in on, with that
//! port's MAC as the source: each port answers for the VIPAs with its own
//! address, so a switch learns every port and a port failure is survivable.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vipa_proto::wire::{
    arp, checksum, ethernet, icmpv4, icmpv6, ipv4, ipv6, EtherType, EthernetAddress,
};

use super::encap::write_ethernet;
use super::Verdict;
use crate::buf::PacketBuffer;
use crate::counters::{Counter, Counters};
use crate::neighbor::Neighbors;
use crate::tables::Tables;

const REPLY_TTL: u8 = 64;
/// RFC 4861 §7.1.1: a node MUST silently discard a neighbour solicitation
/// whose "IP Hop Limit field has a value other than 255"; §7.2.4 sends
/// advertisements with 255 too.
const ND_HOP_LIMIT: u8 = 255;
/// RFC 1812 §4.3.2.3: an ICMP error "SHOULD contain as much of the original
/// datagram as possible without the length of the ICMP datagram exceeding 576 bytes".
const ICMPV4_ERROR_MAX: usize = 576;
/// RFC 4443 §2.4 (c): "as much of the invoking packet as possible without the
/// ICMPv6 packet exceeding the minimum IPv6 MTU" (1280).
const ICMPV6_ERROR_MAX: usize = 1280;
/// RFC 4861 §7.1.1: "ICMP length (derived from the IP length) is 24 or more octets."
const NS_MIN_LEN: usize = 24;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

fn vlan_of(data: &[u8]) -> Option<u16> {
    ethernet::Packet::new_unchecked(data).vlan_tag()
}

/// ARP: a request for an owned VIPA gets a reply from this port's MAC;
/// anything else goes to the host.
#[allow(clippy::too_many_arguments)]
pub(super) fn arp<B: PacketBuffer>(
    tables: &Tables,
    neighbors: &Neighbors,
    port: usize,
    buf: &mut B,
    l2_len: usize,
    now: u32,
    counters: &mut Counters,
) -> Verdict {
    let data = buf.data();
    let req = match arp::Packet::new_checked(&data[l2_len..]) {
        Ok(p) => p,
        Err(vipa_proto::wire::Error::Truncated) => return Verdict::Drop(Counter::DropMalformed),
        Err(_) => return Verdict::Host(Counter::HostArp),
    };
    // Any ARP from a next hop tells us where it is (RFC 826: "the sender's
    // protocol/hardware address pair" is merged into the table).
    if neighbors.learn(
        IpAddr::V4(req.source_protocol_addr()),
        port,
        req.source_hardware_addr().0,
        now,
    ) {
        counters.inc(Counter::NeighborLearned);
    }
    let vipa = req.target_protocol_addr();
    if req.operation() != arp::Operation::Request || !tables.owns_v4(vipa) {
        return Verdict::Host(Counter::HostArp);
    }
    let asker_mac = req.source_hardware_addr();
    let asker_ip = req.source_protocol_addr();
    let vlan = vlan_of(data);
    let my_mac = tables.ports[port].mac;
    let repr = arp::Repr {
        operation: arp::Operation::Reply,
        source_hardware_addr: EthernetAddress(my_mac),
        source_protocol_addr: vipa,
        target_hardware_addr: asker_mac,
        target_protocol_addr: asker_ip,
    };
    let frame_len = l2_len + repr.buffer_len();
    buf.truncate(frame_len);
    let data = buf.data_mut();
    write_ethernet(
        &mut data[..l2_len],
        asker_mac.0,
        my_mac,
        vlan,
        EtherType::Arp,
    );
    repr.emit(&mut arp::Packet::new_unchecked(
        &mut data[l2_len..frame_len],
    ));
    counters.inc(Counter::ArpReplies);
    Verdict::Tx
}

/// Neighbour discovery: a solicitation for an owned IPv6 VIPA gets an
/// advertisement with this port's MAC; other ND messages go to the host.
#[allow(clippy::too_many_arguments)]
pub(super) fn neighbor<B: PacketBuffer>(
    tables: &Tables,
    neighbors: &Neighbors,
    port: usize,
    buf: &mut B,
    l2_len: usize,
    now: u32,
    counters: &mut Counters,
) -> Verdict {
    let data = buf.data();
    let ip = ipv6::Packet::new_unchecked(&data[l2_len..]);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let Ok(icmp) = icmpv6::Packet::new_checked(ip.payload()) else {
        return Verdict::Drop(Counter::DropMalformed);
    };
    if icmp.msg_type() == icmpv6::Message::NeighborAdvert {
        // RFC 4861 §7.2.5: an advertisement updates the entry of its target.
        if ip.hop_limit() == ND_HOP_LIMIT && ip.payload().len() >= NS_MIN_LEN {
            let mac = match icmp.target_lladdr() {
                Ok(Some(m)) => Some(m),
                Ok(None) => Some(ethernet::Packet::new_unchecked(data).src_addr()),
                Err(_) => None,
            };
            if let Some(m) = mac {
                if neighbors.learn(IpAddr::V6(icmp.target_addr()), port, m.0, now) {
                    counters.inc(Counter::NeighborLearned);
                }
            }
        }
        return Verdict::Host(Counter::HostNdp);
    }
    if icmp.msg_type() != icmpv6::Message::NeighborSolicit {
        return Verdict::Host(Counter::HostNdp);
    }
    // RFC 4861 §7.1.1 validity checks: hop limit 255, code 0, valid
    // checksum, ICMP length 24 or more, target not multicast. A solicitation
    // that fails them is not ours to answer; the host may judge it.
    if ip.hop_limit() != ND_HOP_LIMIT
        || icmp.code() != 0
        || ip.payload().len() < NS_MIN_LEN
        || !icmp.verify_checksum(&src, &dst)
    {
        return Verdict::Host(Counter::HostNdp);
    }
    let target = icmp.target_addr();
    if target.is_multicast() || !tables.owns_v6(target) {
        return Verdict::Host(Counter::HostNdp);
    }
    let Ok(asker_ll) = icmp.source_lladdr() else {
        return Verdict::Host(Counter::HostNdp);
    };
    let vlan = vlan_of(data);
    let eth_src_of_ns = ethernet::Packet::new_unchecked(data).src_addr();
    // RFC 4861 §7.2.4: "If the source of the solicitation is the unspecified
    // address, the node MUST set the Solicited flag to zero and multicast the
    // advertisement to the all-nodes address. Otherwise, the node MUST set the
    // Solicited flag to one and unicast the advertisement to the target
    // address of the solicitation" (its source).
    let (ip_dst, mac_dst, solicited) = if src.is_unspecified() {
        (ALL_NODES, ALL_NODES_MAC, false)
    } else {
        (src, asker_ll.unwrap_or(eth_src_of_ns).0, true)
    };
    let my_mac = tables.ports[port].mac;
    let na = icmpv6::Repr::NeighborAdvert {
        router_flag: false,
        solicited_flag: solicited,
        override_flag: true,
        target_addr: target,
        lladdr: Some(EthernetAddress(my_mac)),
    };
    if !write_ipv6_icmp(buf, l2_len, mac_dst, my_mac, vlan, target, ip_dst, &na) {
        return Verdict::Drop(Counter::DropNoBufferRoom);
    }
    counters.inc(Counter::NeighborAdverts);
    Verdict::Tx
}

/// Makes the frame exactly `len` bytes long.
fn resize<B: PacketBuffer>(buf: &mut B, len: usize) -> bool {
    let cur = buf.len();
    if cur < len {
        buf.append(len - cur)
    } else {
        buf.truncate(len);
        true
    }
}

/// ICMP echo request to a VIPA → echo reply from the VIPA, in place.
pub(super) fn echo_v4<B: PacketBuffer>(
    tables: &Tables,
    port: usize,
    buf: &mut B,
    l2_len: usize,
    counters: &mut Counters,
) -> Verdict {
    let data = buf.data();
    let ip = ipv4::Packet::new_unchecked(&data[l2_len..]);
    let total = ip.total_len() as usize;
    if !icmpv4::Packet::new_unchecked(ip.payload()).verify_checksum() {
        return Verdict::Drop(Counter::DropIcmpChecksum);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let asker_mac = ethernet::Packet::new_unchecked(data).src_addr();
    let vlan = vlan_of(data);
    buf.truncate(l2_len + total);
    let data = buf.data_mut();
    write_ethernet(
        &mut data[..l2_len],
        asker_mac.0,
        tables.ports[port].mac,
        vlan,
        EtherType::Ipv4,
    );
    let mut ip = ipv4::Packet::new_unchecked(&mut data[l2_len..]);
    ip.set_src_addr(dst);
    ip.set_dst_addr(src);
    ip.set_hop_limit(REPLY_TTL);
    ip.fill_checksum();
    let mut icmp = icmpv4::Packet::new_unchecked(ip.payload_mut());
    // RFC 792: "To form an echo reply message, the source and destination
    // addresses are simply reversed, the type code changed to 0, and the
    // checksum recomputed." Recomputed incrementally (RFC 1624): only the
    // type byte changed.
    let old = u16::from_be_bytes([icmpv4::Message::EchoRequest.into(), icmp.code()]);
    let new = u16::from_be_bytes([icmpv4::Message::EchoReply.into(), icmp.code()]);
    let sum = checksum::update16(icmp.checksum(), old, new);
    icmp.set_msg_type(icmpv4::Message::EchoReply);
    icmp.set_checksum(sum);
    counters.inc(Counter::EchoReplies);
    Verdict::Tx
}

/// ICMPv6 echo request to a VIPA → echo reply from the VIPA, in place.
pub(super) fn echo_v6<B: PacketBuffer>(
    tables: &Tables,
    port: usize,
    buf: &mut B,
    l2_len: usize,
    counters: &mut Counters,
) -> Verdict {
    let data = buf.data();
    let ip = ipv6::Packet::new_unchecked(&data[l2_len..]);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if !icmpv6::Packet::new_unchecked(ip.payload()).verify_checksum(&src, &dst) {
        return Verdict::Drop(Counter::DropIcmpChecksum);
    }
    let total = ipv6::HEADER_LEN + ip.payload_len() as usize;
    let asker_mac = ethernet::Packet::new_unchecked(data).src_addr();
    let vlan = vlan_of(data);
    buf.truncate(l2_len + total);
    let data = buf.data_mut();
    write_ethernet(
        &mut data[..l2_len],
        asker_mac.0,
        tables.ports[port].mac,
        vlan,
        EtherType::Ipv6,
    );
    let mut ip = ipv6::Packet::new_unchecked(&mut data[l2_len..]);
    ip.set_src_addr(dst);
    ip.set_dst_addr(src);
    ip.set_hop_limit(REPLY_TTL);
    // The pseudo-header sum does not change when source and destination
    // swap; only the type byte does (RFC 1624 incremental update).
    let mut icmp = icmpv6::Packet::new_unchecked(ip.payload_mut());
    let old = u16::from_be_bytes([icmpv6::Message::EchoRequest.into(), icmp.code()]);
    let new = u16::from_be_bytes([icmpv6::Message::EchoReply.into(), icmp.code()]);
    let sum = checksum::update16(icmp.checksum(), old, new);
    icmp.set_msg_type(icmpv6::Message::EchoReply);
    icmp.set_checksum(sum);
    counters.inc(Counter::EchoReplies);
    Verdict::Tx
}

/// The packet in `buf` is too big for the tunnel: turn it into an ICMP
/// fragmentation-needed (IPv4) or packet-too-big (IPv6) to its sender, from
/// the VIPA, quoting as much of it as the RFCs allow.
#[allow(clippy::too_many_arguments)]
pub(super) fn too_big<B: PacketBuffer>(
    tables: &Tables,
    port: usize,
    buf: &mut B,
    l2_len: usize,
    inner_v6: bool,
    inner_len: usize,
    mtu: usize,
    counters: &mut Counters,
) -> Verdict {
    let data = buf.data();
    let asker_mac = ethernet::Packet::new_unchecked(data).src_addr();
    let vlan = vlan_of(data);
    let my_mac = tables.ports[port].mac;
    if inner_v6 {
        let ip = ipv6::Packet::new_unchecked(&data[l2_len..]);
        let (client, vipa) = (ip.src_addr(), ip.dst_addr());
        let head = ipv6::HEADER_LEN + icmpv6::HEADER_LEN;
        let quote = inner_len.min(ICMPV6_ERROR_MAX - head);
        buf.truncate(l2_len + quote);
        if !buf.prepend(head) {
            return Verdict::Drop(Counter::DropNoBufferRoom);
        }
        let data = buf.data_mut();
        write_ethernet(
            &mut data[..l2_len],
            asker_mac.0,
            my_mac,
            vlan,
            EtherType::Ipv6,
        );
        let ip_repr = ipv6::Repr {
            src_addr: vipa,
            dst_addr: client,
            next_header: icmpv6::PROTOCOL,
            payload_len: icmpv6::HEADER_LEN + quote,
            hop_limit: REPLY_TTL,
            dscp: 0,
            ecn: 0,
            flow_label: 0,
        };
        let (ip_bytes, icmp_bytes) = data[l2_len..].split_at_mut(ipv6::HEADER_LEN);
        ip_repr.emit(&mut ipv6::Packet::new_unchecked(ip_bytes));
        let repr = icmpv6::Repr::PktTooBig {
            mtu: mtu as u32,
            data_len: quote,
        };
        repr.emit(
            &vipa,
            &client,
            &mut icmpv6::Packet::new_unchecked(icmp_bytes),
        );
        counters.inc(Counter::Icmpv6TooBigSent);
    } else {
        let ip = ipv4::Packet::new_unchecked(&data[l2_len..]);
        let (client, vipa): (Ipv4Addr, Ipv4Addr) = (ip.src_addr(), ip.dst_addr());
        let head = ipv4::HEADER_LEN + icmpv4::HEADER_LEN;
        let quote = inner_len.min(ICMPV4_ERROR_MAX - head);
        buf.truncate(l2_len + quote);
        if !buf.prepend(head) {
            return Verdict::Drop(Counter::DropNoBufferRoom);
        }
        let data = buf.data_mut();
        write_ethernet(
            &mut data[..l2_len],
            asker_mac.0,
            my_mac,
            vlan,
            EtherType::Ipv4,
        );
        let ip_repr = ipv4::Repr {
            src_addr: vipa,
            dst_addr: client,
            next_header: icmpv4::PROTOCOL,
            payload_len: icmpv4::HEADER_LEN + quote,
            hop_limit: REPLY_TTL,
            dscp: 0,
            ecn: 0,
            dont_frag: false,
        };
        let (ip_bytes, icmp_bytes) = data[l2_len..].split_at_mut(ipv4::HEADER_LEN);
        let mut ipp = ipv4::Packet::new_unchecked(ip_bytes);
        ip_repr.emit(&mut ipp);
        ipp.fill_checksum();
        // RFC 1191 §4: code 4 with the next-hop MTU in the low-order 16 bits
        // of the second word, the high-order 16 bits unused (zero).
        let repr = icmpv4::Repr::DstUnreachable {
            code: icmpv4::DstUnreachable::FragNeeded,
            next_hop_mtu: mtu as u16,
            data_len: quote,
        };
        repr.emit(&mut icmpv4::Packet::new_unchecked(icmp_bytes));
        counters.inc(Counter::IcmpFragNeededSent);
    }
    Verdict::Tx
}

/// Writes into `buf` a request for next hop `address` from `port`: an ARP
/// request (broadcast, sender = the node's IPv4 tunnel address) or a
/// neighbour solicitation (to the solicited-node group, source = the IPv6
/// tunnel address, with our link-layer address, RFC 4861 §7.2.2). False
/// when the node has no source address of that family or the buffer is too small.
pub(crate) fn neighbor_request<B: PacketBuffer>(
    tables: &Tables,
    port: usize,
    address: IpAddr,
    vlan: Option<u16>,
    buf: &mut B,
) -> bool {
    let my_mac = tables.ports[port].mac;
    let l2_len = if vlan.is_some() {
        ethernet::VLAN_HEADER_LEN
    } else {
        ethernet::HEADER_LEN
    };
    match address {
        IpAddr::V4(target) => {
            let Some(source) = tables.tunnel_source_v4 else {
                return false;
            };
            let repr = arp::Repr {
                operation: arp::Operation::Request,
                source_hardware_addr: EthernetAddress(my_mac),
                source_protocol_addr: source,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: target,
            };
            let len = l2_len + repr.buffer_len();
            if !resize(buf, len) {
                return false;
            }
            let data = buf.data_mut();
            write_ethernet(&mut data[..l2_len], [0xff; 6], my_mac, vlan, EtherType::Arp);
            repr.emit(&mut arp::Packet::new_unchecked(&mut data[l2_len..len]));
            true
        }
        IpAddr::V6(target) => {
            let Some(source) = tables.tunnel_source_v6 else {
                return false;
            };
            let group = ipv6::solicited_node_multicast(&target);
            let g = group.octets();
            let ns = icmpv6::Repr::NeighborSolicit {
                target_addr: target,
                lladdr: Some(EthernetAddress(my_mac)),
            };
            write_ipv6_icmp(
                buf,
                l2_len,
                [0x33, 0x33, g[12], g[13], g[14], g[15]],
                my_mac,
                vlan,
                source,
                group,
                &ns,
            )
        }
    }
}

/// Writes into `buf` an announcement of VIPA `vipa` from `port`: a
/// gratuitous ARP request (RFC 5227 §3 "ARP Announcement": sender and target
/// protocol address both the VIPA, broadcast) or an unsolicited neighbour
/// advertisement to all-nodes with the override flag (RFC 4861 §7.2.6).
pub(crate) fn announce<B: PacketBuffer>(
    tables: &Tables,
    port: usize,
    vipa: IpAddr,
    buf: &mut B,
) -> bool {
    let my_mac = tables.ports[port].mac;
    let l2_len = ethernet::HEADER_LEN;
    match vipa {
        IpAddr::V4(a) => {
            let repr = arp::Repr {
                operation: arp::Operation::Request,
                source_hardware_addr: EthernetAddress(my_mac),
                source_protocol_addr: a,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: a,
            };
            let len = l2_len + repr.buffer_len();
            if !resize(buf, len) {
                return false;
            }
            let data = buf.data_mut();
            write_ethernet(&mut data[..l2_len], [0xff; 6], my_mac, None, EtherType::Arp);
            repr.emit(&mut arp::Packet::new_unchecked(&mut data[l2_len..len]));
            true
        }
        IpAddr::V6(a) => {
            let na = icmpv6::Repr::NeighborAdvert {
                router_flag: false,
                solicited_flag: false,
                override_flag: true,
                target_addr: a,
                lladdr: Some(EthernetAddress(my_mac)),
            };
            write_ipv6_icmp(buf, l2_len, ALL_NODES_MAC, my_mac, None, a, ALL_NODES, &na)
        }
    }
}

/// Ethernet + IPv6 (hop limit 255) + a neighbour-discovery message, sized exactly.
#[allow(clippy::too_many_arguments)]
fn write_ipv6_icmp<B: PacketBuffer>(
    buf: &mut B,
    l2_len: usize,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    vlan: Option<u16>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    msg: &icmpv6::Repr,
) -> bool {
    let icmp_len = msg.buffer_len();
    let len = l2_len + ipv6::HEADER_LEN + icmp_len;
    if !resize(buf, len) {
        return false;
    }
    let data = buf.data_mut();
    write_ethernet(&mut data[..l2_len], dst_mac, src_mac, vlan, EtherType::Ipv6);
    let ip_repr = ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: icmpv6::PROTOCOL,
        payload_len: icmp_len,
        hop_limit: ND_HOP_LIMIT,
        dscp: 0,
        ecn: 0,
        flow_label: 0,
    };
    let (ip_bytes, icmp_bytes) = data[l2_len..].split_at_mut(ipv6::HEADER_LEN);
    ip_repr.emit(&mut ipv6::Packet::new_unchecked(ip_bytes));
    msg.emit(&src, &dst, &mut icmpv6::Packet::new_unchecked(icmp_bytes));
    true
}
