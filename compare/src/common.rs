//! What every library's run shares: the link model, the scenario timeline and the result row.

use std::collections::HashMap;
use whisper_proto::rng::{RandomSource, Rng};
use whisper_tests::sim::metrics::DeliverySummary;

/// Shortest one-way latency, in microseconds.
pub const LAT_MIN_US: u64 = 10_000;
/// Longest one-way latency, in microseconds.
pub const LAT_MAX_US: u64 = 50_000;
/// Virtual time before the first broadcast (membership settles).
pub const WARMUP_US: u64 = 20_000_000;
/// Broadcasts per run.
pub const MESSAGES: u64 = 10;
/// Virtual time between broadcasts.
pub const SPACING_US: u64 = 1_000_000;
/// Virtual time after the last broadcast.
pub const TAIL_US: u64 = 10_000_000;
/// Application payload per broadcast, in bytes.
pub const PAYLOAD_LEN: usize = 64;

/// Who publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// All broadcasts from node 0.
    Single,
    /// Each broadcast from a random node.
    Random,
}

impl Scenario {
    /// The label in the table.
    pub fn label(self) -> &'static str {
        match self {
            Self::Single => "single sender",
            Self::Random => "random senders",
        }
    }

    /// The origin of every broadcast, drawn from its own seeded RNG.
    pub fn origins(self, n: usize, seed: u64) -> Vec<usize> {
        let mut rng = Rng::new(seed ^ 0x5e4d_e125);
        (0..MESSAGES)
            .map(|_| match self {
                Self::Single => 0,
                Self::Random => rng.below(n as u64) as usize,
            })
            .collect()
    }
}

/// The shared link model for the hand-written event loops (iroh-gossip, foca): uniform
/// 10–50 ms per message, FIFO per directed pair (a later message never overtakes an
/// earlier one on the same link, like a stream), seeded. whisper's simulator applies
/// the same model (`LinkConfig::default()`, stream mode).
#[derive(Debug)]
pub struct Links {
    rng: Rng,
    last: HashMap<(u32, u32), u64>,
}

impl Links {
    /// A link model seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            last: HashMap::new(),
        }
    }

    /// The arrival time of a message sent `from → to` at `now` (µs).
    pub fn arrival(&mut self, now: u64, from: usize, to: usize) -> u64 {
        let lat = LAT_MIN_US + self.rng.below(LAT_MAX_US - LAT_MIN_US + 1);
        let last = self.last.entry((from as u32, to as u32)).or_insert(0);
        let at = (now + lat).max(*last);
        *last = at;
        at
    }
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// Library.
    pub library: String,
    /// Nodes.
    pub n: usize,
    /// Scenario.
    pub scenario: Scenario,
    /// Topology / overlay note.
    pub overlay: String,
    /// Delivery figures.
    pub summary: DeliverySummary,
    /// Payload messages in the measured window.
    pub payload_msgs: u64,
    /// Control messages in the measured window.
    pub control_msgs: u64,
    /// Bytes sent per node in the measured window (payload + control).
    pub bytes_per_node: f64,
    /// Wall time of the run, seconds (not part of the table).
    pub wall_s: f64,
}

/// First-delivery hops by the harness: a node's hop is its sender's hop plus one (the
/// publisher is at hop 0). Used where the library does not report hops itself.
#[derive(Debug, Default)]
pub struct HopOracle {
    hops: HashMap<(u64, usize), u32>,
}

impl HopOracle {
    /// `origin` published `id`.
    pub fn publish(&mut self, id: u64, origin: usize) {
        self.hops.insert((id, origin), 0);
    }

    /// `node` first got `id` from `from`: its hop.
    pub fn deliver(&mut self, id: u64, node: usize, from: usize) -> u32 {
        let h = self.hops.get(&(id, from)).copied().unwrap_or(0) + 1;
        *self.hops.entry((id, node)).or_insert(h)
    }
}

/// The payload of broadcast `id`: the id, then padding.
pub fn payload(id: u64) -> Vec<u8> {
    let mut p = vec![0xa5u8; PAYLOAD_LEN];
    p[..8].copy_from_slice(&id.to_be_bytes());
    p
}

/// The id in a payload.
pub fn payload_id(p: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(p.get(..8)?.try_into().ok()?))
}
