//! Capture port: receive from a pcap file, transmit to another.
//!
//! This is what `vipa-forwarder replay` runs the worker on. Frames that the
//! data plane transmits go to the output capture, frames for the host to the
//! host capture (or nowhere). Output frames carry the timestamp of the burst
//! that produced them, so the same input gives byte-identical output.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::DataLink;

use super::{Burst, PortQueue};
use crate::buf::{HeapBuf, PacketBuffer};

/// Errors of the capture port: which file, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PcapPortError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot create: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a pcap file ({detail}); pcapng is not read: convert it with `editcap -F pcap IN OUT`")]
    Format { path: PathBuf, detail: String },
    #[error("{path}: link type {link:?} is not Ethernet; only Ethernet captures can be replayed")]
    LinkType { path: PathBuf, link: DataLink },
    #[error("{path}: {detail}")]
    Io { path: PathBuf, detail: String },
}

/// A capture port: one input, one output, an optional host output.
pub struct PcapPort {
    input: PcapReader<BufReader<File>>,
    input_path: PathBuf,
    out: PcapWriter<BufWriter<File>>,
    out_path: PathBuf,
    host: Option<(PcapWriter<BufWriter<File>>, PathBuf)>,
    now: Duration,
    /// Timestamp of the burst last received: output frames carry it.
    burst_time: Duration,
    /// The next input frame, read ahead so that [`PcapPort::now`] is the
    /// timestamp of the burst about to be received.
    peeked: Option<(Duration, Vec<u8>)>,
    /// Frames read from the input.
    pub frames_in: u64,
    /// First write error seen; writing stops counting as success after it.
    pub error: Option<PcapPortError>,
    finished: bool,
}

fn writer(path: &Path) -> Result<PcapWriter<BufWriter<File>>, PcapPortError> {
    let f = File::create(path).map_err(|source| PcapPortError::Create {
        path: path.to_owned(),
        source,
    })?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        snaplen: 65535,
        ..PcapHeader::default()
    };
    PcapWriter::with_header(BufWriter::new(f), header).map_err(|e| PcapPortError::Io {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

impl PcapPort {
    /// Opens the input capture and creates the outputs.
    pub fn open(input: &Path, out: &Path, host: Option<&Path>) -> Result<Self, PcapPortError> {
        let f = File::open(input).map_err(|source| PcapPortError::Open {
            path: input.to_owned(),
            source,
        })?;
        let reader = PcapReader::new(BufReader::new(f)).map_err(|e| PcapPortError::Format {
            path: input.to_owned(),
            detail: e.to_string(),
        })?;
        let link = reader.header().datalink;
        if link != DataLink::ETHERNET {
            return Err(PcapPortError::LinkType {
                path: input.to_owned(),
                link,
            });
        }
        let host = match host {
            Some(p) => Some((writer(p)?, p.to_owned())),
            None => None,
        };
        let mut port = PcapPort {
            input: reader,
            input_path: input.to_owned(),
            out: writer(out)?,
            out_path: out.to_owned(),
            host,
            now: Duration::ZERO,
            burst_time: Duration::ZERO,
            peeked: None,
            frames_in: 0,
            error: None,
            finished: false,
        };
        port.peek();
        Ok(port)
    }

    /// Reads the next frame into `peeked` (or marks the input finished).
    fn peek(&mut self) {
        self.peeked = None;
        match self.input.next_packet() {
            None => self.finished = true,
            Some(Err(e)) => {
                self.finished = true;
                self.error.get_or_insert(PcapPortError::Io {
                    path: self.input_path.clone(),
                    detail: format!("after frame {}: {e}", self.frames_in),
                });
            }
            Some(Ok(pkt)) => {
                self.now = pkt.timestamp;
                self.peeked = Some((pkt.timestamp, pkt.data.into_owned()));
            }
        }
    }

    /// Timestamp of the next burst (its first frame's), or of the last one
    /// once the input is exhausted.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// True once every input frame has been received (or the input is unreadable).
    pub fn finished(&self) -> bool {
        self.finished && self.peeked.is_none()
    }

    /// Flushes the outputs; returns the first error seen during the replay.
    pub fn finish(mut self) -> Result<(), PcapPortError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let flush = |w: PcapWriter<BufWriter<File>>, path: &Path| {
            w.into_writer()
                .into_inner()
                .map_err(|e| PcapPortError::Io {
                    path: path.to_owned(),
                    detail: e.to_string(),
                })
                .map(drop)
        };
        flush(self.out, &self.out_path)?;
        if let Some((w, p)) = self.host {
            flush(w, &p)?;
        }
        Ok(())
    }

    fn write_all(
        w: &mut PcapWriter<BufWriter<File>>,
        path: &Path,
        now: Duration,
        frames: &mut Burst<HeapBuf>,
        error: &mut Option<PcapPortError>,
    ) {
        for b in frames.drain(..) {
            let pkt = PcapPacket::new(now, b.len() as u32, b.data());
            if let Err(e) = w.write_packet(&pkt) {
                error.get_or_insert(PcapPortError::Io {
                    path: path.to_owned(),
                    detail: e.to_string(),
                });
            }
        }
    }
}

impl PortQueue for PcapPort {
    type Buf = HeapBuf;

    fn rx_burst(&mut self, out: &mut Burst<HeapBuf>, max: usize) -> usize {
        let want = max.min(out.remaining_capacity());
        let mut n = 0;
        while n < want {
            let Some((ts, frame)) = self.peeked.take() else {
                break;
            };
            if n == 0 {
                self.burst_time = ts;
            }
            self.frames_in += 1;
            out.push(HeapBuf::from_frame(&frame));
            n += 1;
            self.peek();
        }
        n
    }

    fn tx_burst(&mut self, frames: &mut Burst<HeapBuf>) {
        Self::write_all(
            &mut self.out,
            &self.out_path,
            self.burst_time,
            frames,
            &mut self.error,
        );
    }

    fn alloc(&mut self) -> Option<HeapBuf> {
        Some(HeapBuf::with_capacity(2048))
    }

    fn to_host(&mut self, frames: &mut Burst<HeapBuf>) {
        match &mut self.host {
            Some((w, p)) => Self::write_all(w, p, self.burst_time, frames, &mut self.error),
            // No host capture: the host path still "takes" the frames (counted
            // by the worker as handed to the host), they just go nowhere.
            None => frames.clear(),
        }
    }
}
