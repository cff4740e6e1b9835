#!/usr/bin/python3
"""Decode vipa's replay output with scapy and check the header policy.

For every GRE frame: the outer header (IPv4: TTL 64, protocol 47, DSCP/ECN
and DF copied from the inner packet, valid checksum; IPv6: hop limit 64,
next header 47, traffic class copied), the GRE header (4 bytes, no flags,
protocol by inner family), the outer source (the node's tunnel address),
the outer destination (a configured target), and the inner packet, which
must be byte-identical to a packet of the input capture.
"""
import sys
import tomllib

from scapy.all import GRE, IP, IPv6, Ether, rdpcap, raw  # type: ignore

inp, out, cfg_path = sys.argv[1:4]
cfg = tomllib.load(open(cfg_path, "rb"))
src4 = cfg["node"]["tunnel_source_v4"]
src6 = cfg["node"].get("tunnel_source_v6")
targets = {t["address"] for v in cfg["vipa"] for t in v["target"]}


def ip_bytes(frame):
    eth = Ether(raw(frame))
    return raw(eth.payload)


inputs = set()
for f in rdpcap(inp):
    try:
        b = ip_bytes(f)
    except Exception:
        continue
    inputs.add(b)

checked = 0
for f in rdpcap(out):
    eth = Ether(raw(f))
    if not eth.haslayer(GRE):
        continue
    outer = eth.payload
    g = outer.payload
    assert len(raw(g)) - len(raw(g.payload)) == 4, "GRE header is not 4 bytes"
    assert g.chksum_present == 0 and g.key_present == 0 and g.seqnum_present == 0
    assert g.version == 0
    inner = raw(g.payload)
    # Inner packet byte-identical to an input packet (Ethernet padding removed).
    inner_len = (inner[2] << 8 | inner[3]) if inner[0] >> 4 == 4 else 40 + (inner[4] << 8 | inner[5])
    assert len(inner) == inner_len, "inner packet length does not match its header"
    assert any(b[:inner_len] == inner for b in inputs if len(b) >= inner_len and b[:20] == inner[:20]), \
        "inner packet is not byte-identical to any input packet"
    inner_v4 = inner[0] >> 4 == 4
    inner_tos = inner[1] if inner_v4 else ((inner[0] & 0x0F) << 4 | inner[1] >> 4)
    assert g.proto == (0x0800 if inner_v4 else 0x86DD), f"GRE proto {g.proto:#x}"
    if isinstance(outer, IP):
        assert outer.ttl == 64 and outer.proto == 47 and outer.ihl == 5
        assert outer.src == src4, f"outer source {outer.src}"
        assert outer.dst in targets, f"outer destination {outer.dst} is not a target"
        assert outer.tos == inner_tos, "DSCP/ECN not copied"
        inner_df = bool(inner[6] & 0x40) if inner_v4 else True
        assert bool(outer.flags.DF) == inner_df, "DF not copied"
        assert outer.len == 20 + 4 + inner_len
        chk = outer.chksum
        del outer.chksum
        assert IP(raw(outer))[IP].chksum == chk, "outer IPv4 checksum wrong"
    else:
        assert isinstance(outer, IPv6)
        assert outer.hlim == 64 and outer.nh == 47
        assert outer.src == src6 and outer.dst in targets
        assert outer.tc == inner_tos, "traffic class not copied"
        assert outer.plen == 4 + inner_len
    checked += 1

assert checked > 0, "no GRE frame in the output"
print(f"scapy: {checked} GRE frames match the header policy; inner packets byte-identical")
