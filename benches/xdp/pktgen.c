// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// The XDP side of `vipa-packet-gen`, attached (native mode) to the
// generator's interface for the length of a run. Two jobs:
//
// - Generating. Run by BPF_PROG_TEST_RUN in live-frames mode
//   (BPF_F_TEST_XDP_LIVE_FRAMES) on a template IPv4/UDP frame to DUT_MAC, it
//   gives each frame the next of FLOWS source ports (BASE_PORT, BASE_PORT + 1,
//   ...) and transmits it out of the interface (XDP_TX). On a veth the frame
//   goes to the peer as an xdp_frame: no socket buffer, no copy from user
//   space. The UDP checksum is left at zero (optional in IPv4). Being
//   attached also keeps the program in the kernel's XDP dispatcher, so a test
//   run does not wait for two RCU grace periods to swap it in and out.
// - Counting. Every other frame (not to DUT_MAC: what the device under test
//   sends back) is counted in `rx_frames` and dropped, so what came back is
//   counted where it arrives, cheaply, and never reaches the stack.
//
// Frames are told apart by their destination MAC. The test run's page pool
// recycles frames with the content they had when dropped, hence the counting
// branch restores the template's addresses.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

volatile const __u32 FLOWS = 1;
volatile const __u32 BASE_PORT = 10000;
volatile const __u8 DUT_MAC[ETH_ALEN] = {0};
volatile const __u8 GEN_MAC[ETH_ALEN] = {0};
// One generator thread runs the program at a time: a plain counter will do.
__u32 next_flow = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} rx_frames SEC(".maps");

SEC("xdp")
int vipa_pktgen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	int ours = 1;
	for (int i = 0; i < ETH_ALEN; i++)
		ours &= eth->h_dest[i] == DUT_MAC[i];
	if (!ours) {
		__u32 k = 0;
		__u64 *n = bpf_map_lookup_elem(&rx_frames, &k);
		if (n)
			*n += 1;
		// Put the template's addresses back before dropping: with
		// XDP_TX on the other side (the baseline) this is a frame of
		// the test run's page pool, which recycles it with its
		// content as is, and it must be a frame to DUT_MAC again.
		for (int i = 0; i < ETH_ALEN; i++) {
			eth->h_dest[i] = DUT_MAC[i];
			eth->h_source[i] = GEN_MAC[i];
		}
		return XDP_DROP;
	}
	struct udphdr *udp = data + sizeof(struct ethhdr) + sizeof(struct iphdr);
	if ((void *)(udp + 1) > end)
		return XDP_DROP;
	__u32 f = next_flow;
	next_flow = f + 1 >= FLOWS ? 0 : f + 1;
	udp->source = bpf_htons((__u16)(BASE_PORT + f));
	udp->check = 0;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
