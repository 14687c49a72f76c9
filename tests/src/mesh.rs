//! An N-engine stepper: every pair of engines can be linked by one in-memory
//! connection; frames are delivered in FIFO order on injected time, and every frame that
//! crossed is recorded with its size and (for G1) its record count.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use whisper_proto::wire::codec::{BodyKind, G1Codec, ProtobufCodec};
use whisper_proto::wire::{Frame, FrameDecoder, WireConfig, magic};
use whisper_proto::{Action, Bytes, ConnId, Engine, Event, Identity, Instant, Role};

/// One frame that crossed a link.
#[derive(Clone, Debug)]
pub struct Sent {
    /// When.
    pub at: Instant,
    /// Sender index.
    pub from: usize,
    /// Receiver index.
    pub to: usize,
    /// Its magic.
    pub magic: u16,
    /// Its size in bytes, header included.
    pub len: usize,
    /// Records carried, for an exchange-kind G1 body (0 otherwise).
    pub records: usize,
    /// The decoded frame.
    pub frame: Frame,
}

/// N engines and the links between them. On node `i`, the link to node `j` is
/// `ConnId(j)`.
#[derive(Debug)]
pub struct Mesh {
    /// The engines.
    pub nodes: Vec<Engine>,
    /// Virtual time.
    pub now: Instant,
    /// Every frame that crossed, in order.
    pub sent: Vec<Sent>,
    /// Events each node emitted, in order.
    pub events: Vec<(usize, Event)>,
    links: BTreeSet<(usize, usize)>,
    queue: VecDeque<(usize, usize, Bytes)>,
    held: BTreeSet<usize>,
    parked: Vec<(usize, usize, Bytes)>,
    observers: BTreeMap<(usize, usize), FrameDecoder>,
    observer_config: WireConfig,
}

/// The connection id node `_i` uses for its link to node `j`.
pub fn conn(j: usize) -> ConnId {
    ConnId(j as u64)
}

impl Mesh {
    /// Engines with no links yet.
    pub fn new(nodes: Vec<Engine>, now: Instant) -> Self {
        Self {
            nodes,
            now,
            sent: Vec::new(),
            events: Vec::new(),
            links: BTreeSet::new(),
            queue: VecDeque::new(),
            held: BTreeSet::new(),
            parked: Vec::new(),
            observers: BTreeMap::new(),
            observer_config: WireConfig::default(),
        }
    }

    /// Node `i` dials node `j` (HELLO on both sides); does not settle.
    ///
    /// # Panics
    /// If either engine refuses the connection.
    pub fn connect(&mut self, i: usize, j: usize) {
        let now = self.now;
        self.nodes[i]
            .handle_connected(now, conn(j), Role::Dialer, Identity::Hello)
            .expect("dial");
        self.nodes[j]
            .handle_connected(now, conn(i), Role::Acceptor, Identity::Hello)
            .expect("accept");
        self.links.insert((i.min(j), i.max(j)));
    }

    /// Links every pair, the lower index dialing.
    pub fn connect_all(&mut self) {
        let n = self.nodes.len();
        for i in 0..n {
            for j in i + 1..n {
                self.connect(i, j);
            }
        }
    }

    /// Closes the link between `i` and `j` on both sides.
    pub fn disconnect(&mut self, i: usize, j: usize) {
        let now = self.now;
        self.nodes[i].handle_disconnected(now, conn(j));
        self.nodes[j].handle_disconnected(now, conn(i));
        self.links.remove(&(i.min(j), i.max(j)));
    }

    /// Frames to node `i` are parked until [`Mesh::release`].
    pub fn hold(&mut self, i: usize) {
        self.held.insert(i);
    }

    /// Delivers the frames parked for node `i` (at the current time) and settles.
    pub fn release(&mut self, i: usize) -> usize {
        self.held.remove(&i);
        let (mine, rest): (Vec<_>, Vec<_>) = self.parked.drain(..).partition(|p| p.1 == i);
        self.parked = rest;
        self.queue.extend(mine);
        self.settle()
    }

    /// The most frames one settle may move before it declares a livelock.
    pub const SETTLE_LIMIT: usize = 10_000_000;

    /// Drains every engine and delivers every frame until nothing moves. Returns the
    /// frames moved.
    ///
    /// # Panics
    /// On a livelock (more than [`Mesh::SETTLE_LIMIT`] frames).
    pub fn settle(&mut self) -> usize {
        let mut moved = 0;
        loop {
            for i in 0..self.nodes.len() {
                self.drain(i);
            }
            let Some((from, to, bytes)) = self.queue.pop_front() else {
                return moved;
            };
            if self.held.contains(&to) {
                self.parked.push((from, to, bytes));
                continue;
            }
            moved += 1;
            assert!(
                moved <= Self::SETTLE_LIMIT,
                "mesh does not settle: livelock"
            );
            let now = self.now;
            let _ = self.nodes[to].handle_bytes(now, conn(from), &bytes);
        }
    }

    /// Advances to `t`, fires every engine's due timers, settles.
    pub fn advance_to(&mut self, t: Instant) -> usize {
        self.now = self.now.max(t);
        let now = self.now;
        for e in &mut self.nodes {
            e.handle_timeout(now);
        }
        self.settle()
    }

    /// The earliest deadline of any engine.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.nodes.iter().filter_map(Engine::poll_timeout).min()
    }

    /// Handles every deadline up to and including `t`, in order; ends at `t`.
    pub fn run_until(&mut self, t: Instant) {
        while let Some(d) = self.next_deadline() {
            if d > t {
                break;
            }
            self.advance_to(d);
        }
        self.advance_to(t);
    }

    /// Takes the events recorded so far.
    pub fn take_events(&mut self) -> Vec<(usize, Event)> {
        std::mem::take(&mut self.events)
    }

    /// Frames recorded since index `from` of [`Mesh::sent`].
    pub fn sent_since(&self, from: usize) -> &[Sent] {
        &self.sent[from.min(self.sent.len())..]
    }

    fn drain(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].poll_action() {
            match action {
                Action::Send { conn: c, bytes } => {
                    let j = c.0 as usize;
                    let obs = self.observers.entry((i, j)).or_default();
                    let mut input: &[u8] = &bytes;
                    loop {
                        let before = input.len();
                        let Ok(Some(frame)) = obs.decode(&self.observer_config, &mut input) else {
                            break;
                        };
                        let len = before - input.len();
                        let records = match &frame {
                            Frame::Exchange(ex) if !ex.is_keepalive() => ProtobufCodec
                                .decode(ex.body.clone())
                                .ok()
                                .filter(|b| b.kind == BodyKind::Exchange)
                                .map_or(0, |b| b.records.len()),
                            _ => 0,
                        };
                        self.sent.push(Sent {
                            at: self.now,
                            from: i,
                            to: j,
                            magic: frame.magic(),
                            len,
                            records,
                            frame,
                        });
                    }
                    self.queue.push_back((i, j, bytes));
                }
                Action::Emit(e) => self.events.push((i, e)),
                Action::Close { conn: c, .. } => {
                    let j = c.0 as usize;
                    let now = self.now;
                    self.nodes[j].handle_disconnected(now, conn(i));
                    self.links.remove(&(i.min(j), i.max(j)));
                }
                _ => {}
            }
        }
    }
}

/// Totals over a slice of [`Sent`].
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Tally {
    /// Frames.
    pub frames: usize,
    /// Bytes.
    pub bytes: usize,
    /// G1 frames.
    pub g1: usize,
    /// G2 frames.
    pub g2: usize,
    /// G2B frames.
    pub g2b: usize,
    /// Records in exchange-kind G1 bodies.
    pub records: usize,
}

impl Tally {
    /// Sums `sent`.
    pub fn of(sent: &[Sent]) -> Self {
        let mut t = Self::default();
        for s in sent {
            t.frames += 1;
            t.bytes += s.len;
            t.records += s.records;
            match s.magic {
                magic::EXCHANGE => t.g1 += 1,
                magic::DIGEST => t.g2 += 1,
                magic::BUCKET_DIGEST => t.g2b += 1,
                _ => {}
            }
        }
        t
    }
}
