//! A two-engine stepper: shuttles `Send` bytes between two engines in memory, on
//! injected time, and records every frame that crossed.

use whisper_proto::wire::{Frame, FrameDecoder, WireConfig};
use whisper_proto::{Action, ConnId, Engine, Event, Identity, Instant, Role};

/// Which engine sent a frame.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Side {
    /// The dialer.
    A,
    /// The acceptor.
    B,
}

/// One frame that crossed the in-memory link.
#[derive(Clone, Debug)]
pub struct Crossing {
    /// When.
    pub at: Instant,
    /// Who sent it.
    pub from: Side,
    /// Its bytes.
    pub bytes: whisper_proto::Bytes,
    /// The frame, decoded by an observer with default caps.
    pub frame: Frame,
}

/// Two engines joined by one in-memory connection.
#[derive(Debug)]
pub struct Pair {
    /// The dialer.
    pub a: Engine,
    /// The acceptor.
    pub b: Engine,
    /// Virtual time.
    pub now: Instant,
    /// Every frame that crossed, in order.
    pub transcript: Vec<Crossing>,
    /// Events each side emitted.
    pub events: Vec<(Side, Event)>,
    /// Connections each side closed.
    pub closed: Vec<Side>,
    observers: [FrameDecoder; 2],
    observer_config: WireConfig,
}

/// The connection id each side uses for the link.
pub const LINK: ConnId = ConnId(1);

impl Pair {
    /// Connects `a` (dialing) and `b` (accepting) with HELLO.
    pub fn connect(mut a: Engine, mut b: Engine, now: Instant) -> Self {
        a.handle_connected(now, LINK, Role::Dialer, Identity::Hello)
            .expect("fresh engine accepts a connection");
        b.handle_connected(now, LINK, Role::Acceptor, Identity::Hello)
            .expect("fresh engine accepts a connection");
        Self {
            a,
            b,
            now,
            transcript: Vec::new(),
            events: Vec::new(),
            closed: Vec::new(),
            observers: [FrameDecoder::new(), FrameDecoder::new()],
            observer_config: WireConfig::default(),
        }
    }

    /// Registers a custom frame kind on both engines and on the transcript's observer.
    pub fn register_frame_kind(
        &mut self,
        magic: u16,
        max_len: u32,
    ) -> Result<(), whisper_proto::wire::RegisterError> {
        self.a.register_frame_kind(magic, max_len)?;
        self.b.register_frame_kind(magic, max_len)?;
        self.observer_config.register_custom(magic, max_len)
    }

    /// The most frames one [`Pair::settle`] may move before it declares a livelock.
    pub const SETTLE_LIMIT: usize = 1_000_000;

    /// Drains both engines until neither has anything to do. Returns the frames moved.
    ///
    /// # Panics
    /// If more than [`Pair::SETTLE_LIMIT`] frames move: the engines are ping-ponging.
    pub fn settle(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let n = self.drain(Side::A) + self.drain(Side::B);
            if n == 0 {
                return moved;
            }
            moved += n;
            assert!(
                moved <= Self::SETTLE_LIMIT,
                "engines do not settle: livelock"
            );
        }
    }

    /// Advances virtual time to `t`, fires both engines' timers, and settles.
    pub fn advance_to(&mut self, t: Instant) -> usize {
        self.now = self.now.max(t);
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        self.settle()
    }

    /// Jumps to the earlier of the two engines' next deadlines and handles it.
    pub fn next_timer(&mut self) -> Option<Instant> {
        let t = [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()?;
        self.advance_to(t);
        Some(t)
    }

    fn drain(&mut self, side: Side) -> usize {
        let mut moved = 0;
        loop {
            let (from, to) = match side {
                Side::A => (&mut self.a, &mut self.b),
                Side::B => (&mut self.b, &mut self.a),
            };
            let Some(action) = from.poll_action() else {
                return moved;
            };
            match action {
                Action::Send { bytes, .. } => {
                    let obs = &mut self.observers[side as usize];
                    let mut input: &[u8] = &bytes;
                    while let Ok(Some(frame)) = obs.decode(&self.observer_config, &mut input) {
                        moved += 1;
                        self.transcript.push(Crossing {
                            at: self.now,
                            from: side,
                            bytes: bytes.clone(),
                            frame,
                        });
                    }
                    // The receiver closes on its own error; the stepper just delivers.
                    let _ = to.handle_bytes(self.now, LINK, &bytes);
                }
                Action::Emit(e) => self.events.push((side, e)),
                Action::Close { .. } => {
                    self.closed.push(side);
                    to.handle_disconnected(self.now, LINK);
                }
                _ => {}
            }
        }
    }
}
