//! The link model: latency, loss, duplication, reordering and bandwidth, per direction.
//!
//! whisper runs over reliable ordered byte streams, so the default [`LinkMode::Stream`]
//! never loses or reorders bytes inside a connection: a "lost write" is modelled the
//! only way a stream can lose one, by breaking the connection (both sides get
//! `handle_disconnected`, and the simulator re-dials after
//! [`crate::sim::SimConfig::reconnect_delay`]). [`LinkMode::Frames`] is a datagram-like
//! mode for protocol experiments: every `Send` is cut into whole frames with
//! [`FrameDecoder`], and each frame is lost, duplicated or delayed on its own, so the
//! receiver's decoder never sees a torn frame.

use super::metrics::FrameKind;
use whisper_proto::rng::{RandomSource, Rng};
use whisper_proto::wire::{FrameDecoder, WireConfig};
use whisper_proto::{Bytes, ConnId, Duration, Instant};

/// A one-way latency distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    /// Always this long.
    Fixed(Duration),
    /// Uniform in `min..=max`.
    Uniform {
        /// Shortest.
        min: Duration,
        /// Longest.
        max: Duration,
    },
}

impl Latency {
    /// One draw.
    pub fn sample(&self, rng: &mut Rng) -> Duration {
        match *self {
            Self::Fixed(d) => d,
            Self::Uniform { min, max } => {
                let (lo, hi) = (min.as_micros() as u64, max.as_micros() as u64);
                Duration::from_micros(lo + rng.below(hi.saturating_sub(lo) + 1))
            }
        }
    }
}

/// How a link treats the bytes of a `Send`.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum LinkMode {
    /// A TCP-like stream: in order, never torn; loss breaks the connection.
    #[default]
    Stream,
    /// Datagram-like, at frame boundaries: each frame is lost, duplicated and jittered
    /// independently (and may overtake others).
    Frames,
}

/// One direction of a link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// One-way latency (default uniform 10–50 ms).
    pub latency: Latency,
    /// Probability of loss: per `Send` in [`LinkMode::Stream`] (the connection breaks),
    /// per frame in [`LinkMode::Frames`] (the frame vanishes).
    pub loss: f64,
    /// Probability that a frame is delivered twice ([`LinkMode::Frames`] only).
    pub duplicate: f64,
    /// Extra uniform delay `0..=reorder` per frame, so frames may overtake each other
    /// ([`LinkMode::Frames`] only).
    pub reorder: Duration,
    /// Bandwidth cap in bytes per second: writes are serialised one after another at
    /// this rate before the latency applies. `None` = unlimited.
    pub bandwidth: Option<u64>,
    /// Stream or frames.
    pub mode: LinkMode,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            latency: Latency::Uniform {
                min: Duration::from_millis(10),
                max: Duration::from_millis(50),
            },
            loss: 0.0,
            duplicate: 0.0,
            reorder: Duration::ZERO,
            bandwidth: None,
            mode: LinkMode::Stream,
        }
    }
}

impl LinkConfig {
    /// The default link in [`LinkMode::Frames`] with frame loss `loss`.
    pub fn frames(loss: f64) -> Self {
        Self {
            loss,
            mode: LinkMode::Frames,
            ..Self::default()
        }
    }

    /// The time `len` bytes take to serialise at the bandwidth cap.
    pub fn serialisation(&self, len: usize) -> Duration {
        match self.bandwidth {
            Some(bw) if bw > 0 => {
                Duration::from_micros((len as u64).saturating_mul(1_000_000).div_ceil(bw))
            }
            _ => Duration::ZERO,
        }
    }
}

/// What happens to connections across a partition.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum PartitionMode {
    /// Links across are torn down at once (both sides get `handle_disconnected`), and
    /// are not re-dialled until [`crate::sim::Sim::heal`].
    #[default]
    Break,
    /// Links across stay open but every byte across is dropped, as a silent network
    /// would: the engines notice through their idle timeouts.
    Blackhole,
}

/// One side of a link.
#[derive(Clone, Copy, Debug)]
pub(crate) struct End {
    pub(crate) node: usize,
    pub(crate) conn: ConnId,
    /// The engine at this end holds the connection.
    pub(crate) open: bool,
}

/// One direction's transmit state.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Dir {
    /// The serialiser is busy until then.
    pub(crate) busy_until: Instant,
    /// The latest arrival scheduled (streams never reorder).
    pub(crate) last_arrival: Instant,
}

impl Dir {
    /// A fresh direction at `now`: idle serialiser, nothing in flight.
    pub(crate) fn idle(now: Instant) -> Self {
        Self {
            busy_until: now,
            last_arrival: now,
        }
    }

    /// Sends `len` bytes of a stream at `now`: they are serialised after whatever is
    /// queued at `cfg`'s bandwidth, then take `latency`, and never overtake earlier
    /// bytes. Returns `(left, arrival)`: when the last byte left the sender and when it
    /// arrives.
    pub(crate) fn stream(
        &mut self,
        now: Instant,
        cfg: &LinkConfig,
        len: usize,
        latency: Duration,
    ) -> (Instant, Instant) {
        self.busy_until = self.busy_until.max(now) + cfg.serialisation(len);
        let at = (self.busy_until + latency).max(self.last_arrival);
        self.last_arrival = at;
        (self.busy_until, at)
    }

    /// A FIN (or close) sent at `now`: arrives after `latency`, behind every byte sent
    /// before it.
    pub(crate) fn fin(&mut self, now: Instant, latency: Duration) -> Instant {
        let at = (now + latency).max(self.last_arrival);
        self.last_arrival = at;
        at
    }
}

/// An edge of the topology and its current connection.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    /// `ends[0]` dials (the higher node id), `ends[1]` accepts.
    pub(crate) ends: [End; 2],
    /// Bumped at every connect; deliveries of older generations are dropped.
    pub(crate) generation: u32,
    /// Still part of the topology (false once a node left).
    pub(crate) active: bool,
    /// A connect event is queued.
    pub(crate) connect_pending: bool,
    /// Torn down by the simulator: nothing more is delivered on this generation.
    pub(crate) severed: bool,
    /// `dirs[d]` is the traffic from `ends[d]` to `ends[1 - d]`.
    pub(crate) dirs: [Dir; 2],
}

impl Link {
    pub(crate) fn new(dialer: usize, acceptor: usize) -> Self {
        let end = |node| End {
            node,
            conn: ConnId(0),
            open: false,
        };
        Self {
            ends: [end(dialer), end(acceptor)],
            generation: 0,
            active: true,
            connect_pending: false,
            severed: false,
            dirs: [Dir::default(); 2],
        }
    }

    /// Which end `node` is.
    pub(crate) fn side(&self, node: usize) -> usize {
        usize::from(self.ends[0].node != node)
    }

    pub(crate) fn is_down(&self) -> bool {
        !self.ends[0].open && !self.ends[1].open
    }
}

/// Cuts a `Send` into whole frames as the observer understands them: zero-copy slices
/// with their kinds. Bytes it cannot decode come back as one [`FrameKind::Unknown`]
/// chunk.
pub(crate) fn split_frames(observer: &WireConfig, bytes: &Bytes) -> Vec<(FrameKind, Bytes)> {
    let mut out = Vec::with_capacity(1);
    let mut decoder = FrameDecoder::new();
    let mut rest = bytes.clone();
    let mut offset = 0;
    while !rest.is_empty() {
        let before = rest.len();
        match decoder.decode_bytes(observer, &mut rest) {
            Ok(Some(frame)) => {
                let used = before - rest.len();
                out.push((FrameKind::of(&frame), bytes.slice(offset..offset + used)));
                offset += used;
            }
            Ok(None) | Err(_) => {
                out.push((FrameKind::Unknown, bytes.slice(offset..)));
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use whisper_proto::wire::{Digest, Exchange, Frame};

    #[test]
    fn split_cuts_whole_frames() {
        let a = Frame::Digest(Digest::probe(3)).to_bytes().unwrap();
        let b = Frame::Exchange(Exchange::keepalive()).to_bytes().unwrap();
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        let parts = split_frames(&WireConfig::default(), &Bytes::from(both));
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], (FrameKind::Digest, a));
        assert_eq!(parts[1], (FrameKind::Keepalive, b));
        let junk = split_frames(&WireConfig::default(), &Bytes::from_static(b"\x99\x99xx"));
        assert_eq!(junk[0].0, FrameKind::Unknown);
    }

    #[test]
    fn serialisation_and_latency() {
        let c = LinkConfig {
            bandwidth: Some(1000),
            ..LinkConfig::default()
        };
        assert_eq!(c.serialisation(500), Duration::from_millis(500));
        let mut rng = Rng::new(1);
        for _ in 0..100 {
            let d = c.latency.sample(&mut rng);
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(50));
        }
    }
}
