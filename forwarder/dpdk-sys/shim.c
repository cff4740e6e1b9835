/* Small C shim for what bindgen cannot bind: the thread-local rte_errno and
 * the RTE_BIT64 constants. */
#include "wrapper.h"

int vipa_rte_errno(void) { return rte_errno; }

const uint64_t vipa_eth_rss_ip = RTE_ETH_RSS_IP;
const uint64_t vipa_eth_rss_tcp = RTE_ETH_RSS_TCP;
const uint64_t vipa_eth_rss_udp = RTE_ETH_RSS_UDP;
const uint64_t vipa_eth_tx_offload_ipv4_cksum = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
const uint64_t vipa_eth_tx_offload_mbuf_fast_free = RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
