//! A `tracing_subscriber` layer that feeds a [`LogBatcher`] (`std` only).
//!
//! [`BatchingLayer`] turns structured `tracing` events into [`LogEvent`]s and prints the
//! batched lines through a sink callback. An event takes part when it carries the fields
//! `kind` and `actor`; `service` defaults to the subsystem of the event's target
//! ([`targets::service_of`]), and `target`, `count` and `instant` are optional:
//!
//! ```text
//! tracing::info!(target: targets::SYNC, kind = "pulled", actor = %peer, target = %topic);
//! ```
//!
//! Other events are ignored here; an ordinary `fmt` layer next to this one prints them.
//! Time is read from `std::time::Instant` relative to the layer's creation.

use std::boxed::Box;
use std::fmt;
use std::string::{String, ToString};
use std::sync::{Arc, Mutex, PoisonError};
use std::vec::Vec;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::log::{LogBatcher, LogEvent, targets};
use crate::time::{Duration, Instant};

/// A `tracing_subscriber::Layer` that batches structured events into lines.
///
/// Clones share the same batcher. Lines are emitted when events arrive and when the driver
/// calls [`poll`](Self::poll) (e.g. from a one-second ticker); call [`flush`](Self::flush)
/// at shutdown.
///
/// # Example
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tracing_subscriber::layer::SubscriberExt;
/// use whisper_proto::util::{BatchingLayer, LogBatcher, LogBatcherConfig, targets};
///
/// let lines = Arc::new(Mutex::new(Vec::new()));
/// let sink = Arc::clone(&lines);
/// let layer = BatchingLayer::new(LogBatcher::new(LogBatcherConfig::default()), move |line| {
///     sink.lock().unwrap().push(line.to_owned())
/// });
/// let subscriber = tracing_subscriber::registry().with(layer.clone());
/// tracing::subscriber::with_default(subscriber, || {
///     for peer in ["alice", "carol"] {
///         tracing::info!(target: targets::PEX, kind = "sent peers to", actor = peer, target = "bob");
///     }
/// });
/// layer.flush();
/// assert_eq!(*lines.lock().unwrap(), ["[pex] alice and carol sent peers to bob"]);
/// ```
#[derive(Clone)]
pub struct BatchingLayer {
    shared: Arc<Shared>,
}

struct Shared {
    batcher: Mutex<LogBatcher>,
    sink: Box<dyn Fn(&str) + Send + Sync>,
    epoch: std::time::Instant,
}

impl BatchingLayer {
    /// A layer feeding `batcher` and passing each line to `sink`.
    ///
    /// `sink` is called without the batcher's lock held, so it may itself log.
    pub fn new(batcher: LogBatcher, sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self {
            shared: Arc::new(Shared {
                batcher: Mutex::new(batcher),
                sink: Box::new(sink),
                epoch: std::time::Instant::now(),
            }),
        }
    }

    /// A layer printing lines to standard error.
    pub fn stderr(batcher: LogBatcher) -> Self {
        Self::new(batcher, |line| std::eprintln!("{line}"))
    }

    /// Emits the lines whose window has closed.
    pub fn poll(&self) {
        let now = self.now();
        self.emit(|batcher| core::iter::from_fn(|| batcher.poll(now)).collect());
    }

    /// Emits every open group, due or not.
    pub fn flush(&self) {
        self.emit(|batcher| core::iter::from_fn(|| batcher.flush()).collect());
    }

    /// How long until the next group closes, for the driver's ticker.
    pub fn time_to_next_deadline(&self) -> Option<Duration> {
        let deadline = self.with_batcher(|batcher| batcher.next_deadline())?;
        Some(deadline.saturating_duration_since(self.now()))
    }

    /// Runs `f` on the shared batcher, e.g. to register formatters or flip switches.
    pub fn with_batcher<R>(&self, f: impl FnOnce(&mut LogBatcher) -> R) -> R {
        let mut batcher = self
            .shared
            .batcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut batcher)
    }

    /// The layer's clock: time since its creation.
    fn now(&self) -> Instant {
        let elapsed = self.shared.epoch.elapsed().as_micros();
        Instant::from_micros(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    /// Collects lines under the lock, then passes them to the sink after releasing it.
    fn emit(&self, collect: impl FnOnce(&mut LogBatcher) -> Vec<String>) {
        for line in self.with_batcher(collect) {
            (self.shared.sink)(&line);
        }
    }
}

impl fmt::Debug for BatchingLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchingLayer")
            .field("batcher", &self.shared.batcher)
            .field("epoch", &self.shared.epoch)
            .finish_non_exhaustive()
    }
}

impl<S: Subscriber> Layer<S> for BatchingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        let Some(log_event) = fields.into_event(metadata.target(), *metadata.level()) else {
            return;
        };
        let now = self.now();
        self.emit(|batcher| {
            let first = batcher.record(now, log_event);
            first
                .into_iter()
                .chain(core::iter::from_fn(|| batcher.poll(now)))
                .collect()
        });
    }
}

/// The fields of one event that the layer understands.
#[derive(Debug, Default)]
struct Fields {
    service: Option<String>,
    kind: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    count: Option<u64>,
    instant: bool,
}

impl Fields {
    fn into_event(self, tracing_target: &str, level: tracing::Level) -> Option<LogEvent> {
        let service = self
            .service
            .unwrap_or_else(|| targets::service_of(tracing_target).to_string());
        let mut event = LogEvent::new(service, self.kind?, self.actor?).with_level(level);
        if let Some(target) = self.target {
            event = event.with_target(target);
        }
        if let Some(count) = self.count {
            event = event.with_count(count);
        }
        if self.instant {
            event = event.instant();
        }
        Some(event)
    }

    fn text_slot(&mut self, field: &Field) -> Option<&mut Option<String>> {
        match field.name() {
            "service" => Some(&mut self.service),
            "kind" => Some(&mut self.kind),
            "actor" => Some(&mut self.actor),
            "target" => Some(&mut self.target),
            _ => None,
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(slot) = self.text_slot(field) {
            *slot = Some(value.to_string());
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "count" {
            self.count = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "count" {
            self.count = Some(u64::try_from(value).unwrap_or(0));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "instant" {
            self.instant = value;
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(slot) = self.text_slot(field) {
            *slot = Some(std::format!("{value:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::LogBatcherConfig;
    use core::num::NonZeroUsize;
    use std::vec;
    use tracing_subscriber::layer::SubscriberExt;

    fn capture(config: LogBatcherConfig) -> (BatchingLayer, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let layer = BatchingLayer::new(LogBatcher::new(config), move |line| {
            sink.lock().unwrap().push(line.to_string());
        });
        (layer, lines)
    }

    #[test]
    fn batches_structured_events_and_ignores_others() {
        let (layer, lines) = capture(LogBatcherConfig::default());
        let subscriber = tracing_subscriber::registry().with(layer.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: targets::SYNC, kind = "pulled from", actor = "alice", target = "bob");
            tracing::info!(target: "whisper::sync::pull", kind = "pulled from", actor = %"carol", target = "bob", count = 3u64);
            tracing::info!(target: targets::SYNC, "plain message, not batched");
            tracing::debug!(target: targets::SYNC, kind = "noise", actor = "dave");
            tracing::warn!(target: targets::WIRE, service = "custom", kind = "rejected", actor = "erin", instant = true);
        });
        assert_eq!(*lines.lock().unwrap(), ["[custom] erin rejected"]);
        assert!(layer.time_to_next_deadline().is_some());
        layer.poll(); // the 3 s window has not closed yet
        assert_eq!(lines.lock().unwrap().len(), 1);
        layer.flush();
        assert_eq!(
            *lines.lock().unwrap(),
            [
                "[custom] erin rejected",
                "[sync] alice and carol pulled from bob (4 events)"
            ]
        );
        assert!(std::format!("{layer:?}").contains("BatchingLayer"));
    }

    #[test]
    fn zero_window_emits_on_poll_and_switches_apply() {
        let config = LogBatcherConfig {
            window: Duration::ZERO,
            max_actors: NonZeroUsize::MIN,
            ..LogBatcherConfig::default()
        };
        let (layer, lines) = capture(config);
        layer.with_batcher(|b| b.set_service_verbose("pex", true));
        let subscriber = tracing_subscriber::registry().with(layer.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: targets::PEX, kind = "asked", actor = "a");
        });
        layer.poll();
        assert_eq!(*lines.lock().unwrap(), vec!["[pex] a asked".to_string()]);
    }
}
