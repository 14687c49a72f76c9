//! Per-run metrics: frames and bytes by kind and node, link faults, a time series for
//! plots, and a generic delivery tracker for broadcast experiments.
//!
//! Everything here counts; nothing reads a wall clock, so two runs with the same seed
//! produce byte-identical tables.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use whisper_proto::wire::{Frame, magic};
use whisper_proto::{Duration, Event, Instant};

/// What kind of frame was sent, for accounting. Ordered as printed.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum FrameKind {
    /// HELLO (`0x4748`).
    Hello,
    /// G1 with an empty body: a keepalive.
    Keepalive,
    /// G1 with a body.
    Exchange,
    /// G2 digest probe or reply.
    Digest,
    /// G2B bucket digest.
    BucketDigest,
    /// G3 rumor.
    Rumor,
    /// G3-ACK.
    RumorAck,
    /// G4 pull.
    Pull,
    /// G4 reconcile.
    Reconcile,
    /// G5 snapshot.
    Snapshot,
    /// A registered custom kind.
    Custom(u16),
    /// Bytes the simulator's observer could not decode (a kind registered on an engine
    /// but not through [`crate::sim::Sim::register_frame_kind`]).
    Unknown,
}

impl FrameKind {
    /// The kind of a decoded frame.
    pub fn of(frame: &Frame) -> Self {
        match frame {
            Frame::Hello(_) => Self::Hello,
            Frame::Exchange(ex) if ex.is_keepalive() => Self::Keepalive,
            Frame::Exchange(_) => Self::Exchange,
            Frame::Digest(_) => Self::Digest,
            Frame::BucketDigest(_) => Self::BucketDigest,
            Frame::Rumor(_) => Self::Rumor,
            Frame::RumorAck(_) => Self::RumorAck,
            Frame::Pull(_) => Self::Pull,
            Frame::Reconcile(_) => Self::Reconcile,
            Frame::Snapshot(_) => Self::Snapshot,
            Frame::Custom(c) => Self::Custom(c.magic),
            _ => Self::Unknown,
        }
    }

    /// The frame's magic, when known.
    pub fn magic(self) -> Option<u16> {
        Some(match self {
            Self::Hello => magic::HELLO,
            Self::Keepalive | Self::Exchange => magic::EXCHANGE,
            Self::Digest => magic::DIGEST,
            Self::BucketDigest => magic::BUCKET_DIGEST,
            Self::Rumor => magic::RUMOR,
            Self::RumorAck => magic::RUMOR_ACK,
            Self::Pull | Self::Reconcile => magic::G4,
            Self::Snapshot => magic::SNAPSHOT,
            Self::Custom(m) => m,
            Self::Unknown => return None,
        })
    }

    /// Payload frames carry application data (G1 with a body, G3, G4 reconcile, G5 and
    /// custom frames); the rest are control frames (HELLO, keepalives, G2, G2B, ACKs,
    /// pulls).
    pub fn is_payload(self) -> bool {
        matches!(
            self,
            Self::Exchange | Self::Rumor | Self::Reconcile | Self::Snapshot | Self::Custom(_)
        )
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hello => f.write_str("HELLO"),
            Self::Keepalive => f.write_str("G1-keepalive"),
            Self::Exchange => f.write_str("G1"),
            Self::Digest => f.write_str("G2"),
            Self::BucketDigest => f.write_str("G2B"),
            Self::Rumor => f.write_str("G3"),
            Self::RumorAck => f.write_str("G3-ACK"),
            Self::Pull => f.write_str("G4-pull"),
            Self::Reconcile => f.write_str("G4-reconcile"),
            Self::Snapshot => f.write_str("G5"),
            Self::Custom(m) => write!(f, "custom-{m:#06x}"),
            Self::Unknown => f.write_str("?"),
        }
    }
}

/// Frames and bytes.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Count {
    /// Whole frames.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, frames: u64, bytes: u64) {
        self.frames += frames;
        self.bytes += bytes;
    }

    fn minus(self, other: Self) -> Self {
        Self {
            frames: self.frames.saturating_sub(other.frames),
            bytes: self.bytes.saturating_sub(other.bytes),
        }
    }
}

/// One node's counters.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct NodeMetrics {
    /// Frames and bytes this node's engine sent, by kind (counted when the engine hands
    /// them to the link, before any loss).
    pub sent: BTreeMap<FrameKind, Count>,
    /// Bytes delivered to this node's engine.
    pub bytes_received: u64,
    /// [`Event::PeerUp`] events this node emitted.
    pub peer_up: u64,
    /// [`Event::PeerDown`] events this node emitted.
    pub peer_down: u64,
    /// [`Event::FrameError`] events this node emitted.
    pub frame_errors: u64,
}

impl NodeMetrics {
    /// Everything this node sent.
    pub fn total_sent(&self) -> Count {
        let mut c = Count::default();
        for v in self.sent.values() {
            c.add(v.frames, v.bytes);
        }
        c
    }

    fn minus(&self, earlier: &Self) -> Self {
        let sent = self
            .sent
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    v.minus(earlier.sent.get(k).copied().unwrap_or_default()),
                )
            })
            .collect();
        Self {
            sent,
            bytes_received: self.bytes_received.saturating_sub(earlier.bytes_received),
            peer_up: self.peer_up.saturating_sub(earlier.peer_up),
            peer_down: self.peer_down.saturating_sub(earlier.peer_down),
            frame_errors: self.frame_errors.saturating_sub(earlier.frame_errors),
        }
    }
}

/// One sample of the run's time series (taken every
/// [`crate::sim::SimConfig::sample_every`]).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Sample {
    /// Virtual time of the sample.
    pub at: Instant,
    /// Sum over live engines of identified peers (each live link counts twice).
    pub peers: u64,
    /// Frames sent since the previous sample.
    pub frames: u64,
    /// Bytes sent since the previous sample.
    pub bytes: u64,
}

/// The counters of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Per node, indexed like the simulator's nodes.
    pub nodes: Vec<NodeMetrics>,
    /// Frames dropped by link loss (frame mode), partitions (blackhole) or because the
    /// link had already broken.
    pub frames_dropped: u64,
    /// Extra copies made by link duplication (frame mode).
    pub frames_duplicated: u64,
    /// Links torn down by the simulator (stream-mode loss, partitions, crashes).
    pub link_breaks: u64,
    /// Connections opened (both sides told `handle_connected`).
    pub connects: u64,
    /// Time series, when sampling is on.
    pub samples: Vec<Sample>,
    /// Virtual time covered by these counters.
    pub span: Duration,
}

impl Metrics {
    /// Records frames sent by `node`.
    pub fn record_send(&mut self, node: usize, kind: FrameKind, bytes: usize) {
        self.ensure(node);
        self.nodes[node]
            .sent
            .entry(kind)
            .or_default()
            .add(1, bytes as u64);
    }

    /// Records bytes delivered to `node`.
    pub fn record_receive(&mut self, node: usize, bytes: usize) {
        self.ensure(node);
        self.nodes[node].bytes_received += bytes as u64;
    }

    /// Counts the events that have counters.
    pub fn record_event(&mut self, node: usize, event: &Event) {
        self.ensure(node);
        let n = &mut self.nodes[node];
        match event {
            Event::PeerUp { .. } => n.peer_up += 1,
            Event::PeerDown { .. } => n.peer_down += 1,
            Event::FrameError { .. } => n.frame_errors += 1,
            _ => {}
        }
    }

    pub(crate) fn ensure(&mut self, node: usize) {
        if self.nodes.len() <= node {
            self.nodes.resize_with(node + 1, NodeMetrics::default);
        }
    }

    /// All nodes' sends of one kind.
    pub fn kind(&self, kind: FrameKind) -> Count {
        let mut c = Count::default();
        for n in &self.nodes {
            if let Some(v) = n.sent.get(&kind) {
                c.add(v.frames, v.bytes);
            }
        }
        c
    }

    /// All nodes' sends, by kind.
    pub fn by_kind(&self) -> BTreeMap<FrameKind, Count> {
        let mut out = BTreeMap::<FrameKind, Count>::new();
        for n in &self.nodes {
            for (k, v) in &n.sent {
                out.entry(*k).or_default().add(v.frames, v.bytes);
            }
        }
        out
    }

    /// Everything sent.
    pub fn total(&self) -> Count {
        let mut c = Count::default();
        for n in &self.nodes {
            let t = n.total_sent();
            c.add(t.frames, t.bytes);
        }
        c
    }

    /// Sends of payload kinds ([`FrameKind::is_payload`]).
    pub fn payload(&self) -> Count {
        self.filtered(FrameKind::is_payload)
    }

    /// Sends of control kinds.
    pub fn control(&self) -> Count {
        self.filtered(|k| !k.is_payload())
    }

    fn filtered(&self, keep: impl Fn(FrameKind) -> bool) -> Count {
        let mut c = Count::default();
        for (k, v) in self.by_kind() {
            if keep(k) {
                c.add(v.frames, v.bytes);
            }
        }
        c
    }

    /// Total [`Event::PeerUp`] events.
    pub fn peer_ups(&self) -> u64 {
        self.nodes.iter().map(|n| n.peer_up).sum()
    }

    /// Total [`Event::PeerDown`] events.
    pub fn peer_downs(&self) -> u64 {
        self.nodes.iter().map(|n| n.peer_down).sum()
    }

    /// Mean bytes sent per node per virtual second over [`Metrics::span`], across
    /// `nodes` nodes (pass the number of live nodes).
    pub fn bytes_per_node_per_sec(&self, nodes: usize) -> f64 {
        let secs = self.span.as_secs_f64();
        if secs == 0.0 || nodes == 0 {
            return 0.0;
        }
        self.total().bytes as f64 / nodes as f64 / secs
    }

    /// The largest per-node bytes per virtual second over [`Metrics::span`].
    pub fn max_node_bytes_per_sec(&self) -> f64 {
        let secs = self.span.as_secs_f64();
        if secs == 0.0 {
            return 0.0;
        }
        self.nodes
            .iter()
            .map(|n| n.total_sent().bytes as f64 / secs)
            .fold(0.0, f64::max)
    }

    /// The counters accumulated since `earlier` (a clone taken before). Samples are
    /// those taken after `earlier`'s last.
    pub fn since(&self, earlier: &Self) -> Self {
        let empty = NodeMetrics::default();
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| n.minus(earlier.nodes.get(i).unwrap_or(&empty)))
            .collect();
        Self {
            nodes,
            frames_dropped: self.frames_dropped - earlier.frames_dropped,
            frames_duplicated: self.frames_duplicated - earlier.frames_duplicated,
            link_breaks: self.link_breaks - earlier.link_breaks,
            connects: self.connects - earlier.connects,
            samples: self.samples[earlier.samples.len().min(self.samples.len())..].to_vec(),
            span: self.span.saturating_sub(earlier.span),
        }
    }

    /// The plain-text metrics table. Only counts and virtual times: identical for
    /// identical seeds.
    pub fn table(&self, live_nodes: usize) -> String {
        let mut s = String::new();
        let n = live_nodes.max(1) as f64;
        let secs = self.span.as_secs_f64();
        let _ = writeln!(
            s,
            "{:<16} {:>12} {:>14} {:>12} {:>12} {:>12}",
            "kind", "frames", "bytes", "frames/node", "bytes/node", "B/node/s"
        );
        let row = |s: &mut String, name: &str, c: Count| {
            let per_sec = if secs > 0.0 {
                c.bytes as f64 / n / secs
            } else {
                0.0
            };
            let _ = writeln!(
                s,
                "{:<16} {:>12} {:>14} {:>12.2} {:>12.1} {:>12.3}",
                name,
                c.frames,
                c.bytes,
                c.frames as f64 / n,
                c.bytes as f64 / n,
                per_sec
            );
        };
        for (k, c) in self.by_kind() {
            row(&mut s, &k.to_string(), c);
        }
        row(&mut s, "control", self.control());
        row(&mut s, "payload", self.payload());
        row(&mut s, "total", self.total());
        let _ = writeln!(
            s,
            "virtual {:.3} s | nodes {} | PeerUp {} | PeerDown {} | connects {} | link breaks {} | dropped {} | duplicated {}",
            secs,
            live_nodes,
            self.peer_ups(),
            self.peer_downs(),
            self.connects,
            self.link_breaks,
            self.frames_dropped,
            self.frames_duplicated,
        );
        s
    }
}

/// One message's deliveries, as recorded by a scenario.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageRecord {
    /// Who published it.
    pub origin: usize,
    /// When.
    pub sent_at: Instant,
    /// First delivery at each node (the origin excluded): hop count and time.
    pub first: BTreeMap<usize, (u32, Instant)>,
    /// Every delivery, duplicates included.
    pub deliveries: u64,
}

/// A protocol-agnostic delivery tracker: scenarios report publishes and deliveries; the
/// tracker computes missed count, RMR, last delivery hop and time to full delivery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryTracker {
    /// Messages by id.
    pub messages: BTreeMap<u64, MessageRecord>,
}

impl DeliveryTracker {
    /// `origin` published `msg_id` at `at`.
    pub fn record_publish(&mut self, origin: usize, msg_id: u64, at: Instant) {
        let m = self.messages.entry(msg_id).or_default();
        m.origin = origin;
        m.sent_at = at;
    }

    /// `node` received `msg_id`, `hop` hops from its origin, at `at`. Returns `true` the
    /// first time `node` gets it (deliveries at the origin are ignored and return
    /// `false`).
    pub fn record_delivery(&mut self, node: usize, msg_id: u64, hop: u32, at: Instant) -> bool {
        let m = self.messages.entry(msg_id).or_default();
        m.deliveries += 1;
        if node == m.origin {
            return false;
        }
        let mut first = false;
        m.first.entry(node).or_insert_with(|| {
            first = true;
            (hop, at)
        });
        first
    }

    /// The summary, given how many nodes should receive each message (`N − 1` for a
    /// broadcast to all) and how many payload frames the run sent.
    pub fn summary(&self, receivers: usize, payload_frames: u64) -> DeliverySummary {
        let mut s = DeliverySummary {
            messages: self.messages.len(),
            receivers,
            ..DeliverySummary::default()
        };
        let mut hops_sum = 0.0;
        let mut full_sum = 0.0;
        for m in self.messages.values() {
            let got = m.first.len().min(receivers);
            s.delivered += got as u64;
            s.missed += (receivers - got) as u64;
            let ldh = m.first.values().map(|(h, _)| *h).max().unwrap_or(0);
            s.ldh_max = s.ldh_max.max(ldh);
            hops_sum += f64::from(ldh);
            if got == receivers {
                s.fully_delivered += 1;
                let last = m.first.values().map(|(_, t)| *t).max().unwrap_or(m.sent_at);
                let d = last.saturating_duration_since(m.sent_at);
                s.full_delivery_max = s.full_delivery_max.max(d);
                full_sum += d.as_secs_f64();
            }
        }
        if s.messages > 0 {
            s.ldh_mean = hops_sum / s.messages as f64;
            let expected = (s.messages * receivers) as f64;
            if expected > 0.0 {
                s.rmr = payload_frames as f64 / expected - 1.0;
            }
        }
        if s.fully_delivered > 0 {
            s.full_delivery_mean = Duration::from_secs_f64(full_sum / s.fully_delivered as f64);
        }
        s
    }
}

/// What [`DeliveryTracker::summary`] computes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DeliverySummary {
    /// Messages tracked.
    pub messages: usize,
    /// Receivers expected per message.
    pub receivers: usize,
    /// First deliveries counted (at most `receivers` per message).
    pub delivered: u64,
    /// Expected deliveries that never happened.
    pub missed: u64,
    /// Messages that reached every receiver.
    pub fully_delivered: usize,
    /// Relative message redundancy: payload frames / (messages × receivers) − 1.
    pub rmr: f64,
    /// Largest last-delivery hop over all messages.
    pub ldh_max: u32,
    /// Mean over messages of the last-delivery hop.
    pub ldh_mean: f64,
    /// Longest publish-to-last-delivery time among fully delivered messages.
    pub full_delivery_max: Duration,
    /// Mean publish-to-last-delivery time among fully delivered messages.
    pub full_delivery_mean: Duration,
}

impl fmt::Display for DeliverySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "messages {} | receivers {} | delivered {} | missed {} | RMR {:.3} | LDH max {} mean {:.2} | full delivery mean {:.1} ms max {:.1} ms",
            self.messages,
            self.receivers,
            self.delivered,
            self.missed,
            self.rmr,
            self.ldh_max,
            self.ldh_mean,
            self.full_delivery_mean.as_secs_f64() * 1e3,
            self.full_delivery_max.as_secs_f64() * 1e3,
        )
    }
}

/// A hand-written SVG line plot of `(virtual seconds, value)` points.
pub fn svg_plot(title: &str, y_label: &str, points: &[(f64, f64)]) -> String {
    const W: f64 = 800.0;
    const H: f64 = 400.0;
    const L: f64 = 70.0;
    const R: f64 = 20.0;
    const T: f64 = 40.0;
    const B: f64 = 50.0;
    let x_max = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.05;
    let px = |x: f64| L + x / x_max * (W - L - R);
    let py = |y: f64| H - B - y / y_max * (H - T - B);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    // Axes and ticks.
    let _ = writeln!(
        s,
        r#"<path d="M{L},{T} V{} H{}" stroke="black" fill="none"/>"#,
        H - B,
        W - R
    );
    for i in 0..=5 {
        let f = f64::from(i) / 5.0;
        let (x, y) = (px(f * x_max), py(f * y_max));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#ccc"/><text x="{x:.1}" y="{}" text-anchor="middle">{:.1}</text>"##,
            H - B,
            T,
            H - B + 16.0,
            f * x_max
        );
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ccc"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - R,
            L - 6.0,
            y + 4.0,
            short(f * y_max)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">virtual time (s)</text>"#,
        W / 2.0,
        H - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        H / 2.0,
        H / 2.0,
        escape(y_label)
    );
    let mut d = String::new();
    for (i, (x, y)) in points.iter().enumerate() {
        let _ = write!(
            d,
            "{}{:.1},{:.1} ",
            if i == 0 { "M" } else { "L" },
            px(*x),
            py(*y)
        );
    }
    let _ = writeln!(
        s,
        r##"<path d="{}" stroke="#1f77b4" stroke-width="1.5" fill="none"/>"##,
        d.trim_end()
    );
    s.push_str("</svg>\n");
    s
}

fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_summary() {
        let mut t = DeliveryTracker::default();
        let t0 = Instant::from_millis(100);
        t.record_publish(0, 7, t0);
        assert!(t.record_delivery(1, 7, 1, Instant::from_millis(120)));
        assert!(!t.record_delivery(1, 7, 2, Instant::from_millis(130)));
        assert!(t.record_delivery(2, 7, 2, Instant::from_millis(150)));
        assert!(!t.record_delivery(0, 7, 3, Instant::from_millis(160)));
        let s = t.summary(2, 4);
        assert_eq!((s.missed, s.ldh_max, s.fully_delivered), (0, 2, 1));
        assert_eq!(s.rmr, 1.0);
        assert_eq!(s.full_delivery_max, Duration::from_millis(50));
        let s = t.summary(3, 3);
        assert_eq!((s.missed, s.fully_delivered), (1, 0));
    }

    #[test]
    fn svg_is_well_formed_enough() {
        let svg = svg_plot("a < b", "peers", &[(0.0, 0.0), (1.0, 5.0), (2.0, 3.0)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt; b"));
    }
}
