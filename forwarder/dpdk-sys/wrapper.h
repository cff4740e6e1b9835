/* What vipa's dpdk backend uses of DPDK 22.11 LTS: bindgen reads this file
 * (build.rs). Static inline functions declared by these headers get C
 * wrappers (bindgen's wrap_static_fns) compiled by build.rs. */
#include <stdint.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

/* rte_errno is a thread-local macro: Rust reads it through this shim (shim.c). */
int vipa_rte_errno(void);

/* Function-like macros bindgen cannot evaluate, as constants (shim.c). */
extern const uint64_t vipa_eth_rss_ip;
extern const uint64_t vipa_eth_rss_tcp;
extern const uint64_t vipa_eth_rss_udp;
extern const uint64_t vipa_eth_tx_offload_ipv4_cksum;
extern const uint64_t vipa_eth_tx_offload_mbuf_fast_free;

/* The offsets and widths of l2_len and l3_len in rte_mbuf's tx_offload word
 * (DPDK's anonymous enum in rte_mbuf_core.h, under a name bindgen can give
 * a stable module), for setting them with one store from Rust. */
enum vipa_mbuf_tx_offload_layout {
	VIPA_MBUF_L2_LEN_OFS = RTE_MBUF_L2_LEN_OFS,
	VIPA_MBUF_L2_LEN_BITS = RTE_MBUF_L2_LEN_BITS,
	VIPA_MBUF_L3_LEN_OFS = RTE_MBUF_L3_LEN_OFS,
	VIPA_MBUF_L3_LEN_BITS = RTE_MBUF_L3_LEN_BITS,
};
