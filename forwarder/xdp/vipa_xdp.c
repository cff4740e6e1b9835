// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// vipa's XDP program for the `afxdp` port backend.
//
// It sends to the port's AF_XDP socket (the XSKMAP entry of the frame's
// receive queue) only what the data plane handles, and passes everything
// else to the kernel, so management traffic on the same port keeps working:
//
// - IPv4 / IPv6 whose destination is an owned VIPA (TCP, UDP, echo, and the
//   ICMP errors about VIPA flows: those are addressed to the VIPA too);
// - ARP requests whose target protocol address is an owned VIPA;
// - ARP replies to the node's tunnel source address from a next hop the data
//   plane resolves (the answers to its own requests);
// - ICMPv6 neighbour solicitations whose target is an owned VIPA;
// - ICMPv6 neighbour advertisements to the node's IPv6 tunnel source address
//   whose target is a next hop (the answers to its own solicitations).
//
// One 802.1Q / 802.1ad tag is looked through. Addresses live in one hash map
// keyed by 16 bytes (IPv4 as ::ffff:a.b.c.d) whose value says what the
// address is to the data plane; user space fills it from the configuration.
// When the queue has no socket, bpf_redirect_map's default action passes the
// frame to the kernel.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ADDR_VIPA 1u       // an owned VIPA
#define ADDR_TUNNEL_SRC 2u // one of the node's tunnel source addresses
#define ADDR_NEXT_HOP 4u   // a target or gateway the data plane resolves

#define ARP_REQUEST 1
#define ARP_REPLY 2
#define ICMPV6_NS 135
#define ICMPV6_NA 136
#define PROTO_ICMPV6 58

struct addr_key {
	__u8 b[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct addr_key);
	__type(value, __u32);
} vipa_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} vipa_xsks SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct ipv4_hdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 len;
	__be16 id;
	__be16 frag;
	__u8 ttl;
	__u8 proto;
	__be16 csum;
	__u8 src[4];
	__u8 dst[4];
};

struct ipv6_hdr {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 next_header;
	__u8 hop_limit;
	__u8 src[16];
	__u8 dst[16];
};

// ARP for IPv4 over Ethernet (RFC 826), 28 bytes.
struct arp_eth_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
};

// Neighbour solicitation / advertisement up to the target address (RFC 4861 §4.3, §4.4).
struct nd_msg {
	__u8 type;
	__u8 code;
	__be16 csum;
	__be32 reserved;
	__u8 target[16];
};

static __always_inline __u32 flags_v6(const __u8 *a)
{
	struct addr_key k;
	__builtin_memcpy(k.b, a, 16);
	__u32 *v = bpf_map_lookup_elem(&vipa_addrs, &k);
	return v ? *v : 0;
}

static __always_inline __u32 flags_v4(const __u8 *a)
{
	struct addr_key k = {};
	k.b[10] = 0xff;
	k.b[11] = 0xff;
	k.b[12] = a[0];
	k.b[13] = a[1];
	k.b[14] = a[2];
	k.b[15] = a[3];
	__u32 *v = bpf_map_lookup_elem(&vipa_addrs, &k);
	return v ? *v : 0;
}

static __always_inline int to_socket(struct xdp_md *ctx)
{
	return bpf_redirect_map(&vipa_xsks, ctx->rx_queue_index, XDP_PASS);
}

SEC("xdp")
int vipa_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	__be16 proto = eth->h_proto;
	void *l3 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vlan = l3;
		if ((void *)(vlan + 1) > end)
			return XDP_PASS;
		proto = vlan->proto;
		l3 = vlan + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct ipv4_hdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		if (flags_v4(ip->dst) & ADDR_VIPA)
			return to_socket(ctx);
		return XDP_PASS;
	}

	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6_hdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		__u32 dst = flags_v6(ip->dst);
		if (dst & ADDR_VIPA)
			return to_socket(ctx);
		if (ip->next_header != PROTO_ICMPV6)
			return XDP_PASS;
		struct nd_msg *nd = (void *)(ip + 1);
		if ((void *)(nd + 1) > end)
			return XDP_PASS;
		if (nd->type == ICMPV6_NS && (flags_v6(nd->target) & ADDR_VIPA))
			return to_socket(ctx);
		if (nd->type == ICMPV6_NA && (dst & ADDR_TUNNEL_SRC) &&
		    (flags_v6(nd->target) & ADDR_NEXT_HOP))
			return to_socket(ctx);
		return XDP_PASS;
	}

	if (proto == bpf_htons(ETH_P_ARP)) {
		struct arp_eth_ipv4 *arp = l3;
		if ((void *)(arp + 1) > end)
			return XDP_PASS;
		if (arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
		    arp->hlen != 6 || arp->plen != 4)
			return XDP_PASS;
		if (arp->op == bpf_htons(ARP_REQUEST) && (flags_v4(arp->tpa) & ADDR_VIPA))
			return to_socket(ctx);
		if (arp->op == bpf_htons(ARP_REPLY) && (flags_v4(arp->tpa) & ADDR_TUNNEL_SRC) &&
		    (flags_v4(arp->spa) & ADDR_NEXT_HOP))
			return to_socket(ctx);
		return XDP_PASS;
	}

	return XDP_PASS;
}

// Dual-licensed (see the SPDX line); the kernel only needs to know that the
// licence is GPL-compatible.
char LICENSE[] SEC("license") = "GPL";
