// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// The kernel baseline of `scripts/bench afxdp`: swap the Ethernet addresses
// and send every frame back out of the port it came in on (XDP_TX), as
// `xdp-bench tx -p swap-macs` does. Used when xdp-bench cannot load on the
// running kernel. (A veth takes XDP_TX frames from its peer only when it
// runs XDP too: the generator's program on the other end, vipa-packet-gen's
// benches/xdp/pktgen.c, is that.)

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_tx_swap_macs(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	unsigned char tmp[ETH_ALEN];
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
