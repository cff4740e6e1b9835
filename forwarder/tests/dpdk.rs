//! The `dpdk` backend on virtual devices (no hugepages, no PCI): the real
//! worker over DPDK queues.
//!
//! The EAL can be initialised once per process, so everything is in one
//! test function, in steps:
//!
//! 1. EAL start-up, and a second `Eal::init` refused;
//! 2. a device that does not exist: an error that says what to do;
//! 3. `net_ring0`: a ring loopback (what is transmitted is received again),
//!    without RSS, so one queue whatever was asked, and without IPv4
//!    checksum offload; `Mbuf` edits (prepend / adj / append / truncate)
//!    against the pool, and the checksum offload request on a real mbuf;
//! 4. frames built with `FrameBuilder` are transmitted into the ring, the
//!    worker receives them, encapsulates them in GRE and transmits them back
//!    into the ring, and the test receives and decodes them: the outer
//!    checksum computed in software, no offload requested;
//! 5. `net_null0` (with RSS, two queues): a smoke test of the worker on a
//!    source of 64-byte frames whose content is whatever the pool's buffers
//!    hold; every frame received is accounted for as sent or dropped.
#![cfg(feature = "dpdk")]

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use common::*;
use vipa_dpdk_sys as sys;
use vipa_forwarder::buf::PacketBuffer;
use vipa_forwarder::counters::Counter;
use vipa_forwarder::pipeline::{Pipeline, Verdict};
use vipa_forwarder::port::dpdk::{DpdkError, DpdkOptions, DpdkPort, DpdkQueue, Eal, Mbuf};
use vipa_forwarder::port::{Burst, PortQueue};
use vipa_forwarder::worker::Worker;
use vipa_proto::build::ip_packet;
use vipa_proto::wire::{ethernet, gre, ipv4, tcp::flags, EtherType};

fn eal_args() -> Vec<String> {
    [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "-m",
        "256",
        "-l",
        "0",
        "--log-level=warning",
        "--vdev=net_ring0",
        "--vdev=net_null0,size=64,copy=0",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn dpdk_backend_on_virtual_devices() {
    // 1. EAL.
    let eal = Eal::init(&eal_args()).expect("EAL starts on virtual devices");
    assert!(matches!(
        Eal::init(&eal_args()),
        Err(DpdkError::AlreadyInitialized)
    ));
    assert!(Eal::get().is_some());
    assert_eq!(
        eal.lcore_id(),
        Some(0),
        "the initialising thread is the main lcore"
    );
    let opts = DpdkOptions::default();

    // 2. A device that is not there.
    let err = DpdkPort::open(&eal, "0000:3b:02.0", 1, &opts).unwrap_err();
    assert!(matches!(err, DpdkError::DeviceNotFound { .. }), "{err}");
    assert!(err.to_string().contains("vfio-pci"), "{err}");

    // 3. The ring loopback: no RSS, so one queue although two were asked for.
    let mut ring = DpdkPort::open(&eal, "net_ring0", 2, &opts).expect("open net_ring0");
    assert_eq!(ring.len(), 1);
    let q = ring.pop().unwrap();
    let info = q.info().clone();
    assert_eq!((info.requested_queues, info.queues, info.rss_hf), (2, 1, 0));
    assert_eq!(info.driver, "net_ring");
    assert!(
        !info.ipv4_cksum_offload,
        "net_ring does not offer IPv4 checksum offload"
    );
    assert!(q.link_up(), "a started ring port has link");
    assert!(matches!(
        DpdkPort::open(&eal, "net_ring0", 1, &opts),
        Err(DpdkError::AlreadyOpen(_))
    ));
    mbuf_edits(&q);
    checksum_offload_request(&q);
    let mut q = q;
    multi_segment_frames_dropped_by_the_pipeline(&mut q);

    // 4. Through the real worker.
    encapsulates_through_the_worker(q);

    // 5. net_null with RSS.
    let nulls = DpdkPort::open(&eal, "net_null0", 2, &opts).expect("open net_null0");
    let info = nulls[0].info().clone();
    assert_eq!(info.driver, "net_null");
    assert_ne!(info.rss_hf, 0, "net_null offers RSS");
    assert!(
        !info.ipv4_cksum_offload,
        "net_null does not offer IPv4 checksum offload"
    );
    assert_eq!(nulls.len(), 2, "RSS: one queue per worker");
    assert_eq!(info.queues, 2);
    let mut w = Worker::new(nulls.into_iter().map(|q| (0, q)).collect(), tables());
    let mut received = 0;
    for _ in 0..20 {
        received += w.poll(100);
    }
    let c = w.counters();
    assert!(received >= 20, "net_null always has frames: {received}");
    assert_eq!(c.get(Counter::RxPackets), received as u64);
    assert_eq!(
        c.get(Counter::RxPackets),
        c.get(Counter::TxPackets) + c.drops(),
        "every frame is sent or dropped (and counted)"
    );
}

/// A frame of two segments among single-segment ones, through the ring:
/// received in order with the others, it shows no bytes and the pipeline
/// drops and counts it; every mbuf goes back to the pool.
fn multi_segment_frames_dropped_by_the_pipeline(q: &mut DpdkQueue) {
    let frame = |b: u8| q.alloc_frame(&[b; 60]).expect("an mbuf");
    let (first, head, tail, last) = (frame(1), frame(2), frame(3), frame(4));
    let (head, tail) = (head.into_raw(), tail.into_raw());
    // SAFETY: both mbufs are ours (just allocated and released from their
    // Mbufs); chaining them as rte_pktmbuf_chain does makes `head` the
    // owner of `tail`.
    let chained = unsafe {
        (*head).next = tail;
        (*head).nb_segs = 2;
        (*head).pkt_len += u32::from((*tail).data_len);
        Mbuf::from_raw(head).expect("non-null")
    };
    assert_eq!(chained.segments(), 2);
    let before = q.pool_available();
    let mut out: Burst<Mbuf> = Burst::new();
    out.extend([first, chained, last]);
    q.tx_burst(&mut out);
    assert!(out.is_empty(), "the ring takes all three");
    let mut got: Burst<Mbuf> = Burst::new();
    for _ in 0..10 {
        if got.len() >= 3 {
            break;
        }
        q.rx_burst(&mut got, 32);
    }
    assert_eq!(got.len(), 3, "the receive hands every frame over");
    assert_eq!((got[0].data()[0], got[2].data()[0]), (1, 4), "in order");
    assert!(!got[0].is_segmented() && !got[2].is_segmented());
    assert!(got[1].is_segmented());
    assert!(
        got[1].data().is_empty() && got[1].len() == 0,
        "shows no bytes"
    );
    let mut p = Pipeline::new(tables());
    assert_eq!(
        p.process_one(0, &mut got[1], 100),
        Verdict::Drop(Counter::DropMultiSegment)
    );
    assert_eq!(p.counters.get(Counter::DropMultiSegment), 1);
    assert_eq!(p.counters.get(Counter::DropMalformed), 0);
    drop(got);
    assert_eq!(
        q.pool_available(),
        before + 4,
        "every mbuf back in the pool"
    );
}

fn mbuf_edits(q: &DpdkQueue) {
    let before = q.pool_available();
    let mut m: Mbuf = q.alloc().expect("an mbuf");
    assert_eq!(q.pool_available(), before - 1);
    assert_eq!(m.len(), 0);
    assert_eq!(m.headroom(), vipa_forwarder::buf::HEADROOM);
    assert_eq!(m.segments(), 1);
    assert!(m.append(4));
    m.data_mut().copy_from_slice(&[1, 2, 3, 4]);
    assert!(m.prepend(2));
    m.data_mut()[..2].copy_from_slice(&[9, 9]);
    assert_eq!(m.data(), &[9, 9, 1, 2, 3, 4]);
    assert_eq!(m.headroom(), vipa_forwarder::buf::HEADROOM - 2);
    assert!(m.adj(3));
    assert_eq!(m.data(), &[2, 3, 4]);
    m.truncate(1);
    assert_eq!(m.data(), &[2]);
    m.truncate(5);
    assert_eq!(m.data(), &[2], "truncate never grows");
    // Refusals change nothing.
    assert!(!m.adj(2));
    assert!(!m.prepend(m.headroom() + 1));
    assert!(!m.prepend(70_000));
    assert!(!m.append(m.tailroom() + 1));
    assert_eq!(m.data(), &[2]);
    let tail = m.tailroom();
    assert!(m.append(tail));
    assert_eq!(m.tailroom(), 0);
    assert!(!m.append(1));
    assert!(m.set_frame(&[7; 60]));
    assert_eq!(m.data(), &[7; 60]);
    assert_eq!(m.headroom(), vipa_forwarder::buf::HEADROOM);
    // reframe = truncate, then prepend (inline on one segment).
    m.data_mut()[..3].copy_from_slice(&[1, 2, 3]);
    assert!(m.reframe(24, 40));
    assert_eq!(m.len(), 64);
    assert_eq!(m.headroom(), vipa_forwarder::buf::HEADROOM - 24);
    assert_eq!(&m.data()[24..27], &[1, 2, 3]);
    // SAFETY: reads the lengths of an mbuf we own.
    assert_eq!(unsafe { (*m.as_ptr()).pkt_len }, 64, "pkt_len follows");
    assert!(m.reframe(0, 100), "never grows at the back");
    assert_eq!(m.len(), 64);
    let head = m.headroom();
    assert!(!m.reframe(head + 1, 30), "no room: shortened, not grown");
    assert_eq!(m.len(), 30);
    assert_eq!(m.headroom(), head);
    // SAFETY: as above.
    assert_eq!(unsafe { (*m.as_ptr()).pkt_len }, 30);
    assert!(m.set_frame(&[7; 60]));
    let raw = m.into_raw();
    // SAFETY: raw came from into_raw just above and is owned by nobody else.
    let m = unsafe { Mbuf::from_raw(raw) }.unwrap();
    drop(m);
    assert_eq!(q.pool_available(), before, "dropping an Mbuf frees it");
}

/// `(ol_flags & (TX_IPV4 | TX_IP_CKSUM), l2_len, l3_len)` of `m`, the
/// lengths read through bindgen's bitfield accessors (the C layout), not
/// the offsets `request_ipv4_checksum` writes with.
fn tx_request(m: &Mbuf) -> (u64, u64, u64) {
    // SAFETY: m owns a valid mbuf and is borrowed for the read; the
    // bitfield view of tx_offload is plain integers over the same 8 bytes,
    // valid whatever they hold.
    let (raw, lens) = unsafe {
        let raw = &*m.as_ptr();
        (raw, raw.__bindgen_anon_3.__bindgen_anon_1)
    };
    (
        raw.ol_flags & (sys::RTE_MBUF_F_TX_IPV4 | sys::RTE_MBUF_F_TX_IP_CKSUM),
        lens.l2_len(),
        lens.l3_len(),
    )
}

const CKSUM_FLAGS: u64 = sys::RTE_MBUF_F_TX_IPV4 | sys::RTE_MBUF_F_TX_IP_CKSUM;

fn checksum_offload_request(q: &DpdkQueue) {
    // The ring's device offers no offload: the worker's pipeline is told so.
    assert!(!q.info().ipv4_cksum_offload);
    assert!(!q.ipv4_checksum_offload());
    let mut m = q.alloc_frame(&[0; 60]).expect("an mbuf");
    assert_eq!(tx_request(&m), (0, 0, 0));
    // The request itself, on a real mbuf: untagged and 802.1Q-tagged.
    for l2_len in [14, 18] {
        assert!(m.request_ipv4_checksum(l2_len, 20));
        assert_eq!(tx_request(&m), (CKSUM_FLAGS, l2_len as u64, 20));
    }
    // Lengths beyond the fields' 7 and 9 bits are refused.
    assert!(!m.request_ipv4_checksum(128, 20));
    assert!(!m.request_ipv4_checksum(14, 512));
    assert_eq!(tx_request(&m), (CKSUM_FLAGS, 18, 20));
}

fn encapsulates_through_the_worker(q: DpdkQueue) {
    // Inject: what the queue transmits, the ring gives back on receive.
    let mut q = q;
    let inputs: Vec<Vec<u8>> = (0..32u16)
        .map(|i| {
            let flag = if i == 0 { flags::SYN } else { flags::ACK };
            builder().tcp(v4(CLIENT4), v4(VIPA4), 40000 + i, 80, flag, b"hello")
        })
        .collect();
    let mut burst = Burst::new();
    for f in &inputs {
        burst.push(q.alloc_frame(f).expect("mbuf"));
    }
    q.tx_burst(&mut burst);
    assert!(burst.is_empty(), "the ring takes the whole burst");

    let mut w = Worker::new(vec![(0, q)], tables());
    let mut got = 0;
    while got < inputs.len() {
        let n = w.poll(100);
        assert!(n > 0, "the worker receives what was injected");
        got += n;
    }
    let c = w.counters();
    assert_eq!(c.get(Counter::Forwarded), inputs.len() as u64);
    assert_eq!(c.get(Counter::TxPackets), inputs.len() as u64);
    assert_eq!(c.drops(), 0);

    // What the worker transmitted is in the ring now.
    let q = &mut w.queues[0].1;
    let mut out = Burst::new();
    let mut frames = Vec::new();
    while frames.len() < inputs.len() {
        let n = q.rx_burst(&mut out, 32);
        assert!(n > 0, "the encapsulated frames come back");
        for m in out.drain(..) {
            // The ring hands back the worker's own mbufs: the software
            // checksum path asked the device for nothing.
            assert_eq!(tx_request(&m), (0, 0, 0));
            frames.push(m.data().to_vec());
        }
    }
    let mut targets = HashSet::new();
    for (frame, input) in frames.iter().zip(&inputs) {
        let eth = ethernet::Packet::new_checked(&frame[..]).unwrap();
        let e = ethernet::Repr::parse(&eth).unwrap();
        assert_eq!(e.src, PORT_MAC);
        assert_eq!(e.dst, ROUTER_MAC);
        assert_eq!(e.ethertype, EtherType::Ipv4);
        let ip = ipv4::Packet::new_checked(&frame[e.header_len()..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.next_header(), 47);
        assert_eq!(ip.src_addr(), Ipv4Addr::new(10, 10, 0, 1));
        let dst = ip.dst_addr().octets();
        assert_eq!(dst[..3], [10, 20, 0]);
        assert!([11u8, 12, 13].contains(&dst[3]));
        targets.insert(dst[3]);
        let g = gre::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(g.protocol_type(), EtherType::Ipv4);
        assert_eq!(g.payload(), ip_packet(input), "inner packet byte-identical");
    }
    assert!(targets.len() > 1, "32 flows spread over the targets");
}
