#!/usr/bin/python3
"""Golden packets for vipa's pipeline, built with scapy — an implementation
independent of vipa's own wire code.

Each case is (description, port, input frame, expected verdict, expected
output frame). The expected output is built here from the header policy in
README.md / DESIGN.md §4, not from vipa's output. The Rust test
`forwarder/tests/golden.rs` runs every input through the real worker on the
in-memory port and compares byte for byte.

    generate.py            write cases.txt next to this file
    generate.py --check    fail if cases.txt is not what this script writes
"""
import os
import sys

from scapy.all import (ARP, GRE, ICMP, IP, TCP, UDP, Dot1Q, Ether, ICMPv6EchoReply,  # type: ignore
                       ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr,
                       ICMPv6NDOptSrcLLAddr, ICMPv6PacketTooBig, IPv6, Raw, raw)

# Must match GOLDEN_CONFIG in golden.rs.
PORT_MAC = ["02:00:00:00:0a:01", "02:00:00:00:0b:01"]
NEXT_HOP = ["02:00:00:00:0a:fe", "02:00:00:00:0b:fe"]
ROUTER = "02:00:00:00:0a:fe"
SRC4, SRC6 = "10.10.0.1", "fd00:10::1"
VIPA4, TARGET4 = "192.0.2.30", "10.20.0.31"
VIPA6, TARGET6 = "2001:db8::30", "fd00:20::31"
VIPA4X, TARGET4X = "192.0.2.40", "fd00:20::41"  # IPv4 VIPA, IPv6 target
CLIENT4, CLIENT6 = "198.51.100.7", "2001:db8:1::7"
MTU = 1500

M64 = (1 << 64) - 1


def fmix64(k):
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & M64
    k ^= k >> 33
    return k


def addr16(a):
    import ipaddress
    ip = ipaddress.ip_address(a)
    return (ipaddress.IPv6Address("::ffff:" + a).packed if ip.version == 4 else ip.packed)


def flow_hash(src, dst, proto, sport, dport):
    """proto/src/flowkey.rs's documented hash, re-implemented."""
    s, d = addr16(src), addr16(dst)
    words = [int.from_bytes(s[:8], "little"), int.from_bytes(s[8:], "little"),
             int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little"),
             sport | dport << 16 | proto << 32]
    h = 0x9E3779B97F4A7C15
    for w in words:
        h = ((h ^ w) * 0xFF51AFD7ED558CCD) & M64
        h = ((h << 31) | (h >> 33)) & M64
    return fmix64(h)


def gre_v4(inner_ip, target, port=0, vlan=None):
    """The header policy for an IPv4 outer header."""
    b = raw(inner_ip)
    if b[0] >> 4 == 4:
        tos, df = b[1], bool(b[6] & 0x40)
        proto = 0x0800
    else:
        tos, df = ((b[0] & 0x0F) << 4) | (b[1] >> 4), True
        proto = 0x86DD
    outer = IP(src=SRC4, dst=target, ttl=64, proto=47, tos=tos, flags="DF" if df else 0,
               id=0 if df else 1)
    return l2(port, vlan, NEXT_HOP[port]) / outer / GRE(proto=proto) / Raw(b)


def gre_v6(inner_ip, target, fl, port=0, vlan=None):
    b = raw(inner_ip)
    if b[0] >> 4 == 4:
        tc, proto = b[1], 0x0800
    else:
        tc, proto = ((b[0] & 0x0F) << 4) | (b[1] >> 4), 0x86DD
    outer = IPv6(src=SRC6, dst=target, hlim=64, nh=47, tc=tc, fl=fl & 0xFFFFF)
    return l2(port, vlan, NEXT_HOP[port]) / outer / GRE(proto=proto) / Raw(b)


def l2(port, vlan, dst):
    e = Ether(src=PORT_MAC[port], dst=dst)
    return e / Dot1Q(vlan=vlan) if vlan is not None else e


def client_frame(vlan=None):
    e = Ether(src=ROUTER, dst=PORT_MAC[0])
    return e / Dot1Q(vlan=vlan) if vlan is not None else e


cases = []


def case(desc, inp, verdict, out=None, port=0):
    cases.append((desc, port, raw(inp), verdict, raw(out) if out is not None else None))


# --- forwarded -------------------------------------------------------------
ip = IP(src=CLIENT4, dst=VIPA4, tos=(46 << 2) | 1, flags="DF", ttl=57, id=777) / \
    TCP(sport=40000, dport=80, flags="S", seq=1000, window=64240)
case("IPv4 TCP SYN: GRE over IPv4, TTL 64, DSCP/ECN and DF copied, id 0", client_frame() / ip, "tx",
     gre_v4(ip, TARGET4))

ip = IP(src=CLIENT4, dst=VIPA4, flags=0, ttl=60, id=4242) / UDP(sport=5353, dport=53) / Raw(b"query")
case("IPv4 UDP without DF: outer DF clear, identification from the worker's counter", client_frame() / ip, "tx",
     gre_v4(ip, TARGET4))

ip = IP(src=CLIENT4, dst=VIPA4, flags="DF") / TCP(sport=40001, dport=443, flags="A")
case("minimum-size frame: Ethernet padding is not part of the inner packet",
     raw(client_frame() / ip) + b"\x00" * (60 - 14 - len(raw(ip))), "tx", gre_v4(ip, TARGET4))

ip = IP(src=CLIENT4, dst=VIPA4, flags="DF") / TCP(sport=40002, dport=80, flags="A") / Raw(b"x" * 100)
case("802.1Q-tagged frame: the tag is kept on the encapsulated frame", client_frame(vlan=42) / ip, "tx",
     gre_v4(ip, TARGET4, vlan=42))

ip = IPv6(src=CLIENT6, dst=VIPA6, tc=(10 << 2) | 2, hlim=50, fl=12345) / TCP(sport=40003, dport=80, flags="S")
case("IPv6 TCP SYN: GRE over IPv6, hop limit 64, traffic class copied, flow label from the flow hash",
     client_frame() / ip, "tx", gre_v6(ip, TARGET6, flow_hash(CLIENT6, VIPA6, 6, 40003, 80)))

ip = IP(src=CLIENT4, dst=VIPA4X, tos=0x28, flags="DF") / TCP(sport=40004, dport=80, flags="S")
case("IPv4 VIPA with an IPv6 target: IPv4 inside GRE over IPv6", client_frame() / ip, "tx",
     gre_v6(ip, TARGET4X, flow_hash(CLIENT4, VIPA4X, 6, 40004, 80)))

ip = IP(src=CLIENT4, dst=VIPA4, flags="DF") / TCP(sport=40005, dport=80, flags="A") / Raw(b"y" * (MTU - 20 - 20 - 24))
case("largest IPv4 packet that fits the tunnel (MTU - 24) is forwarded", client_frame() / ip, "tx", gre_v4(ip, TARGET4))

reply = IP(src=VIPA4, dst=CLIENT4, flags="DF") / TCP(sport=443, dport=40006, flags="A") / Raw(b"z" * 1400)
err = IP(src="203.0.113.1", dst=VIPA4, ttl=250) / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(raw(reply)[:28])
case("ICMP fragmentation-needed quoting a VIPA flow: forwarded to that flow's target", client_frame() / err, "tx",
     gre_v4(err, TARGET4))

# --- answered by the node ----------------------------------------------------
arp = ARP(op=1, hwsrc=ROUTER, psrc="192.0.2.1", hwdst="00:00:00:00:00:00", pdst=VIPA4)
case("ARP request for the VIPA on port p0: reply from p0's MAC", Ether(src=ROUTER, dst="ff:ff:ff:ff:ff:ff") / arp,
     "tx", Ether(src=PORT_MAC[0], dst=ROUTER) /
     ARP(op=2, hwsrc=PORT_MAC[0], psrc=VIPA4, hwdst=ROUTER, pdst="192.0.2.1"))
case("ARP request for the VIPA on port p1: reply from p1's MAC",
     Ether(src=ROUTER, dst="ff:ff:ff:ff:ff:ff") / arp, "tx",
     Ether(src=PORT_MAC[1], dst=ROUTER) / ARP(op=2, hwsrc=PORT_MAC[1], psrc=VIPA4, hwdst=ROUTER, pdst="192.0.2.1"),
     port=1)

ns = IPv6(src=CLIENT6, dst="ff02::1:ff00:30", hlim=255) / ICMPv6ND_NS(tgt=VIPA6) / ICMPv6NDOptSrcLLAddr(lladdr=ROUTER)
na = Ether(src=PORT_MAC[0], dst=ROUTER) / IPv6(src=VIPA6, dst=CLIENT6, hlim=255) / \
    ICMPv6ND_NA(R=0, S=1, O=1, tgt=VIPA6) / ICMPv6NDOptDstLLAddr(lladdr=PORT_MAC[0])
case("neighbour solicitation for the IPv6 VIPA: solicited advertisement with the port's MAC",
     Ether(src=ROUTER, dst="33:33:ff:00:00:30") / ns, "tx", na)

ping = IP(src=CLIENT4, dst=VIPA4, ttl=55, id=99) / ICMP(type=8, id=0x1234, seq=7) / Raw(b"ping-data-0123")
pong = Ether(src=PORT_MAC[0], dst=ROUTER) / IP(src=VIPA4, dst=CLIENT4, ttl=64, id=99) / \
    ICMP(type=0, id=0x1234, seq=7) / Raw(b"ping-data-0123")
case("ICMP echo request to the VIPA: echo reply from the VIPA", client_frame() / ping, "tx", pong)

ping6 = IPv6(src=CLIENT6, dst=VIPA6, hlim=50) / ICMPv6EchoRequest(id=0x1234, seq=7, data=b"ping6")
pong6 = Ether(src=PORT_MAC[0], dst=ROUTER) / IPv6(src=VIPA6, dst=CLIENT6, hlim=64) / \
    ICMPv6EchoReply(id=0x1234, seq=7, data=b"ping6")
case("ICMPv6 echo request to the VIPA: echo reply from the VIPA", client_frame() / ping6, "tx", pong6)

big = IP(src=CLIENT4, dst=VIPA4, flags="DF", ttl=61, id=5) / TCP(sport=40007, dport=80, flags="A") / \
    Raw(b"B" * (MTU - 20 - 20 - 24 + 1))
quote = raw(big)[:576 - 28]
case("IPv4 with DF one byte too big for the tunnel: fragmentation-needed, MTU 1476, 576 bytes in all",
     client_frame() / big, "tx",
     Ether(src=PORT_MAC[0], dst=ROUTER) / IP(src=VIPA4, dst=CLIENT4, ttl=64, id=0, flags=0) /
     ICMP(type=3, code=4, nexthopmtu=MTU - 24) / Raw(quote))

big6 = IPv6(src=CLIENT6, dst=VIPA6, hlim=61) / TCP(sport=40008, dport=80, flags="A") / Raw(b"C" * (MTU - 40 - 20 - 44 + 1))
case("IPv6 one byte too big for the tunnel: packet-too-big, MTU 1456, 1280 bytes in all",
     client_frame() / big6, "tx",
     Ether(src=PORT_MAC[0], dst=ROUTER) / IPv6(src=VIPA6, dst=CLIENT6, hlim=64) /
     ICMPv6PacketTooBig(mtu=MTU - 44) / Raw(raw(big6)[:1280 - 48]))

# --- handed to the host --------------------------------------------------------
case("TCP to an address that is not a VIPA: to the host",
     client_frame() / IP(src=CLIENT4, dst="192.0.2.99") / TCP(sport=1, dport=22), "host:host_not_vipa")
case("ARP for another address: to the host",
     Ether(src=ROUTER, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=ROUTER, psrc="192.0.2.1", pdst="192.0.2.99"),
     "host:host_arp")
case("LLDP: to the host", Ether(src=ROUTER, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x02\x07" + b"\x00" * 44),
     "host:host_other_ethertype")

# --- dropped -----------------------------------------------------------------
case("VIPA, port 22 is not a service", client_frame() / IP(src=CLIENT4, dst=VIPA4) / TCP(sport=1, dport=22),
     "drop:drop_not_a_service")
case("IPv4 with options", client_frame() / IP(src=CLIENT4, dst=VIPA4, options=b"\x01\x01\x01\x00") /
     TCP(sport=1, dport=80), "drop:drop_ipv4_options")
case("IPv4 fragment (MF set)", client_frame() / IP(src=CLIENT4, dst=VIPA4, flags="MF") / UDP(sport=1, dport=53) /
     Raw(b"q" * 16), "drop:drop_ipv4_fragment")
case("IPv4 non-first fragment", client_frame() / IP(src=CLIENT4, dst=VIPA4, frag=10, proto=17) / Raw(b"q" * 16),
     "drop:drop_ipv4_fragment")
case("IPv4 without DF too big for the tunnel", client_frame() / IP(src=CLIENT4, dst=VIPA4, flags=0) /
     UDP(sport=2, dport=53) / Raw(b"u" * (MTU - 28 - 24 + 1)), "drop:drop_mtu_no_df")
case("truncated IPv4 header", raw(client_frame() / IP(src=CLIENT4, dst=VIPA4) / TCP(sport=1, dport=80))[:30],
     "drop:drop_malformed")
case("QinQ (two tags)", client_frame(vlan=1) / Dot1Q(vlan=2) / IP(src=CLIENT4, dst=VIPA4) / TCP(sport=1, dport=80),
     "drop:drop_vlan_stacked")
case("GRE to the VIPA", client_frame() / IP(src=CLIENT4, dst=VIPA4) / GRE() / Raw(b"\x00" * 8),
     "drop:drop_vipa_protocol")
case("IPv6 fragment header to the VIPA", client_frame() / IPv6(src=CLIENT6, dst=VIPA6, nh=44) / Raw(b"\x06" + b"\x00" * 15),
     "drop:drop_ipv6_fragment")


def render():
    lines = ["# Generated by generate.py (scapy); do not edit. One case per block:",
             "# desc / port / verdict (tx | host:<counter> | drop:<counter>) / in (hex) / out (hex, tx only)"]
    for desc, port, inp, verdict, out in cases:
        lines += ["", f"desc {desc}", f"port {port}", f"verdict {verdict}", f"in {inp.hex()}"]
        if out is not None:
            lines.append(f"out {out.hex()}")
    return "\n".join(lines) + "\n"


path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases.txt")
text = render()
if "--check" in sys.argv:
    if open(path).read() != text:
        sys.exit(f"{path} is stale: run {sys.argv[0]}")
    print(f"golden cases up to date ({len(cases)} cases)")
else:
    open(path, "w").write(text)
    print(f"wrote {len(cases)} cases to {path}")
