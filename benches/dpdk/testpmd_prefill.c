/* LD_PRELOAD shim for dpdk-testpmd in `scripts/bench dpdk`: after testpmd
 * creates its mbuf pool, every mbuf of the pool gets the frame given in
 * VIPA_TESTPMD_FRAME (hex), the same 64-byte TCP ACK vipa's side receives.
 *
 * Why: net_null (copy=0) hands out mbufs whose bytes are whatever the buffer
 * last held. vipa's pool is filled with the TCP frame before timing;
 * testpmd's was all zeros, so its 5tswap saw EtherType 0 and swapped only the
 * MAC addresses, skipping the IPv4 and TCP swaps it does on real traffic.
 * With this shim testpmd forwards the same frames as vipa. Nothing here runs
 * while testpmd forwards: the pool is filled once, at creation. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_mbuf.h>
#include <rte_mempool.h>

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void fill(struct rte_mempool *mp) {
    static uint8_t frame[2048];
    /* rte_pktmbuf_pool_create calls _by_ops: fill each pool once. */
    static struct rte_mempool *last;
    if (mp == last) return;
    last = mp;
    const char *hex = getenv("VIPA_TESTPMD_FRAME");
    size_t len = 0;
    if (mp == NULL || hex == NULL) return;
    for (; hex[2 * len] && hex[2 * len + 1] && len < sizeof frame; len++) {
        int hi = hexval(hex[2 * len]), lo = hexval(hex[2 * len + 1]);
        if (hi < 0 || lo < 0) return;
        frame[len] = (uint8_t)(hi << 4 | lo);
    }
    unsigned n = mp->size;
    struct rte_mbuf **all = calloc(n, sizeof *all);
    if (all == NULL) return;
    unsigned got = 0;
    while (got < n && (all[got] = rte_pktmbuf_alloc(mp)) != NULL) {
        if (rte_pktmbuf_tailroom(all[got]) >= len)
            memcpy(rte_pktmbuf_mtod(all[got], void *), frame, len);
        got++;
    }
    for (unsigned i = 0; i < got; i++) rte_pktmbuf_free(all[i]);
    free(all);
    fprintf(stderr, "vipa testpmd prefill: %u mbufs of %s filled with a %zu-byte frame\n",
            got, mp->name, len);
}

struct rte_mempool *rte_pktmbuf_pool_create_by_ops(const char *name, unsigned n,
        unsigned cache_size, uint16_t priv_size, uint16_t data_room_size,
        int socket_id, const char *ops_name) {
    static struct rte_mempool *(*real)(const char *, unsigned, unsigned, uint16_t,
                                       uint16_t, int, const char *);
    if (real == NULL) real = dlsym(RTLD_NEXT, "rte_pktmbuf_pool_create_by_ops");
    struct rte_mempool *mp =
        real(name, n, cache_size, priv_size, data_room_size, socket_id, ops_name);
    fill(mp);
    return mp;
}

struct rte_mempool *rte_pktmbuf_pool_create(const char *name, unsigned n,
        unsigned cache_size, uint16_t priv_size, uint16_t data_room_size,
        int socket_id) {
    static struct rte_mempool *(*real)(const char *, unsigned, unsigned, uint16_t,
                                       uint16_t, int);
    if (real == NULL) real = dlsym(RTLD_NEXT, "rte_pktmbuf_pool_create");
    struct rte_mempool *mp = real(name, n, cache_size, priv_size, data_room_size, socket_id);
    fill(mp);
    return mp;
}
