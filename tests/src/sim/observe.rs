//! Observation: counters, recorded events, delivery tracking, samples for plots and
//! the progress bar.

use super::metrics::{DeliveryTracker, Metrics, Sample};
use super::queue::Ev;
use super::{App, NodeCx, Sim};
use whisper_proto::{Event, Instant};

/// One recorded engine event.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// Virtual time.
    pub at: Instant,
    /// Which node emitted it.
    pub node: usize,
    /// The event.
    pub event: Event,
}

#[derive(Debug)]
pub(super) struct Progress {
    pub(super) end: Instant,
    pub(super) shown: u32,
}

impl<A: App> Sim<A> {
    /// The counters so far (their span is the virtual time since the start).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The plain-text metrics table of the run so far.
    pub fn table(&self) -> String {
        let mut s = format!(
            "whisper-sim seed={} nodes={} links={} events={}\n",
            self.seed,
            self.nodes.len(),
            self.link_count(),
            self.processed
        );
        s.push_str(&self.metrics.table(self.alive()));
        if !self.deliveries.messages.is_empty() {
            let summary = self.deliveries.summary(
                self.alive().saturating_sub(1),
                self.metrics.payload().frames,
            );
            s.push_str(&format!("{summary}\n"));
        }
        s
    }

    /// Every recorded event, in order.
    pub fn events(&self) -> &[Recorded] {
        &self.events
    }

    /// One node's recorded events.
    pub fn events_of(&self, node: usize) -> impl Iterator<Item = &Recorded> + '_ {
        self.events.iter().filter(move |r| r.node == node)
    }

    /// The delivery tracker.
    pub fn deliveries(&self) -> &DeliveryTracker {
        &self.deliveries
    }

    /// The delivery tracker, for recording publishes.
    pub fn deliveries_mut(&mut self) -> &mut DeliveryTracker {
        &mut self.deliveries
    }

    /// The application.
    pub fn app(&self) -> &A {
        &self.app
    }

    /// The application, mutably.
    pub fn app_mut(&mut self) -> &mut A {
        &mut self.app
    }

    /// A hash of every processed event and emitted engine event with its virtual time:
    /// equal for equal seeds, almost surely different otherwise.
    pub fn trace_hash(&self) -> u64 {
        self.trace.value()
    }

    /// Queue events processed so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    pub(super) fn on_event(&mut self, node: usize, event: Event) {
        self.metrics.record_event(node, &event);
        let tag = match &event {
            Event::PeerUp { .. } => 10,
            Event::PeerDown { .. } => 11,
            Event::CustomFrame { .. } => 12,
            Event::FrameError { .. } => 13,
            _ => 19,
        };
        self.mix(&[tag, self.now.as_micros(), node as u64]);
        let Self {
            nodes,
            app,
            deliveries,
            now,
            ..
        } = self;
        let n = &mut nodes[node];
        if let Some(engine) = n.engine.as_mut() {
            let mut cx = NodeCx {
                node,
                id: &n.id,
                now: *now,
                engine,
                deliveries,
            };
            app.on_event(&mut cx, &event);
        }
        if self.config.record_events {
            self.events.push(Recorded {
                at: self.now,
                node,
                event,
            });
        }
    }

    pub(super) fn sample(&mut self) {
        let peers = self
            .nodes
            .iter()
            .filter_map(|n| n.engine.as_ref())
            .map(|e| e.stats().peers as u64)
            .sum();
        let total = self.metrics.total();
        let (f0, b0) = self.last_sample;
        self.metrics.samples.push(Sample {
            at: self.now,
            peers,
            frames: total.frames - f0,
            bytes: total.bytes - b0,
        });
        self.last_sample = (total.frames, total.bytes);
        if let Some(every) = self.config.sample_every {
            self.push(self.now + every, Ev::Sample);
        }
    }

    pub(super) fn draw_progress(&mut self, done: bool) {
        let Some(p) = self.progress.as_mut() else {
            return;
        };
        let end = p.end.as_micros().max(1);
        let pct = ((self.now.as_micros().min(end) * 100) / end) as u32;
        if pct <= p.shown && !done && p.shown != 0 {
            return;
        }
        p.shown = pct.max(1);
        let filled = (pct / 2) as usize;
        eprint!(
            "\r[{}{}] {:>3}% virtual {:>8.1} s, {} events",
            "#".repeat(filled),
            ".".repeat(50 - filled),
            pct,
            self.now.as_micros() as f64 / 1e6,
            self.processed
        );
        if done {
            eprintln!();
        }
    }
}
