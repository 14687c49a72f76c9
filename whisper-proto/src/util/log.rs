//! Service-aware logging on `tracing`, with sans-IO batching of repetitive events.
//!
//! # Targets
//!
//! Each subsystem logs under its own `tracing` target (see [`targets`]), so `RUST_LOG`
//! controls each service separately, e.g. `RUST_LOG=whisper=info,whisper::pex=debug`.
//!
//! # Batching
//!
//! Busy services emit many similar events ("alice pulled", "carol pulled", ...). A
//! [`LogBatcher`] groups events by `(service, kind, target)` for a window (3 s by default)
//! and formats each group as one line:
//!
//! ```text
//! [social] alice, carol, and dave teased bob
//! ```
//!
//! Lists follow the English rules: one actor is `alice`, two are `alice and carol`, three
//! or more get an Oxford comma, `alice, carol, and dave`. Formatting is pluggable per
//! `(service, kind)` through [`Formatter`]. Services can be disabled, or made verbose (their
//! debug-level events are kept instead of dropped), and an event marked
//! [`instant`](LogEvent::instant) bypasses batching.
//!
//! The batcher is sans-IO: [`LogBatcher::record`] takes the event and `now`,
//! [`LogBatcher::poll`] returns lines whose window has closed, and
//! [`LogBatcher::next_deadline`] tells the driver when to poll next. Behind the `std`
//! feature, `util::BatchingLayer` drives one from `tracing` events.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use core::num::NonZeroUsize;

use tracing::Level;

use super::lru::LruMap;
use crate::time::{Duration, Instant};

/// The `tracing` target of each whisper subsystem.
///
/// Pass one as `target:` so `RUST_LOG` filters by subsystem:
///
/// ```
/// use whisper_proto::util::targets;
///
/// tracing::debug!(target: targets::PEX, peers = 3, "sent peer exchange");
/// assert_eq!(targets::service_of(targets::PEX), "pex");
/// ```
pub mod targets {
    /// The engine's state machine.
    pub const ENGINE: &str = "whisper::engine";
    /// Frame encoding and decoding.
    pub const WIRE: &str = "whisper::wire";
    /// Pull-based synchronisation.
    pub const SYNC: &str = "whisper::sync";
    /// Rumor mongering (push gossip).
    pub const RUMOR: &str = "whisper::rumor";
    /// Flow control and rate limiting.
    pub const FLOW: &str = "whisper::flow";
    /// Peer exchange.
    pub const PEX: &str = "whisper::pex";
    /// Set reconciliation.
    pub const RECONCILE: &str = "whisper::reconcile";
    /// Snapshots and their manifests.
    pub const SNAPSHOT: &str = "whisper::snapshot";
    /// I/O adapters (tokio, smol, mio).
    pub const ADAPTER: &str = "whisper::adapter";

    /// Every subsystem target.
    pub const ALL: [&str; 9] = [
        ENGINE, WIRE, SYNC, RUMOR, FLOW, PEX, RECONCILE, SNAPSHOT, ADAPTER,
    ];

    /// The service name of a target: the segment after `whisper::`
    /// (`whisper::pex::peer` gives `pex`), or the whole target for foreign targets.
    pub fn service_of(target: &str) -> &str {
        match target.strip_prefix("whisper::") {
            Some(rest) => rest.split("::").next().unwrap_or(rest),
            None => target,
        }
    }
}

/// One structured log event: `actor` did `kind` (to `target`) in `service`.
///
/// ```
/// use whisper_proto::util::LogEvent;
///
/// let event = LogEvent::new("social", "teased", "alice").with_target("bob");
/// assert_eq!(event.actor(), "alice");
/// assert_eq!(event.target(), Some("bob"));
/// assert_eq!(event.count(), 1);
/// ```
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LogEvent {
    service: Cow<'static, str>,
    kind: Cow<'static, str>,
    actor: String,
    target: Option<String>,
    count: u64,
    level: Level,
    instant: bool,
}

impl LogEvent {
    /// An info-level event counting once.
    pub fn new(
        service: impl Into<Cow<'static, str>>,
        kind: impl Into<Cow<'static, str>>,
        actor: impl Into<String>,
    ) -> Self {
        Self {
            service: service.into(),
            kind: kind.into(),
            actor: actor.into(),
            target: None,
            count: 1,
            level: Level::INFO,
            instant: false,
        }
    }

    /// Who or what the action was done to; events are grouped per target.
    pub fn with_target(self, target: impl Into<String>) -> Self {
        Self {
            target: Some(target.into()),
            ..self
        }
    }

    /// A pre-aggregated event standing for `count` occurrences.
    pub fn with_count(self, count: u64) -> Self {
        Self { count, ..self }
    }

    /// The event's level. Debug and trace events are dropped unless the service is verbose.
    pub fn with_level(self, level: Level) -> Self {
        Self { level, ..self }
    }

    /// Marks the event to be emitted at once, unbatched.
    pub fn instant(self) -> Self {
        Self {
            instant: true,
            ..self
        }
    }

    /// The emitting service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// What happened, e.g. `"pulled"`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Who did it.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Who or what it was done to.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// Occurrences this event stands for.
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// The event's level.
    pub const fn level(&self) -> Level {
        self.level
    }

    /// Whether the event bypasses batching.
    pub const fn is_instant(&self) -> bool {
        self.instant
    }
}

/// A closed group of events, as shown to a [`Formatter`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Group<'a> {
    /// The emitting service.
    pub service: &'a str,
    /// What happened.
    pub kind: &'a str,
    /// Who or what it was done to.
    pub target: Option<&'a str>,
    /// Distinct actors, in order of first appearance, at most `max_actors`.
    pub actors: &'a [String],
    /// Events from actors beyond `max_actors` (an unlisted actor is counted each time).
    pub others: u64,
    /// Occurrences in the group, summing each event's count.
    pub events: u64,
}

impl Group<'_> {
    /// The actors as an English list, e.g. `alice, carol, and 2 others`.
    pub fn actor_list(&self) -> String {
        english_list(self.actors, self.others)
    }
}

/// Turns a [`Group`] into the body of a log line (the batcher prefixes `[service] `).
///
/// Closures `Fn(&Group<'_>) -> String` implement it.
pub trait Formatter {
    /// The line body for `group`.
    fn format(&self, group: &Group<'_>) -> String;
}

impl<F: Fn(&Group<'_>) -> String> Formatter for F {
    fn format(&self, group: &Group<'_>) -> String {
        self(group)
    }
}

/// The formatter used when none is registered: `"{actors} {kind} {target}"`, followed by
/// `" ({events} events)"` when the group counted more occurrences than actors.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultFormatter;

impl Formatter for DefaultFormatter {
    fn format(&self, group: &Group<'_>) -> String {
        let mut line = format!("{} {}", group.actor_list(), group.kind);
        if let Some(target) = group.target {
            line.push(' ');
            line.push_str(target);
        }
        let actors = (group.actors.len() as u64).saturating_add(group.others);
        if group.events > actors {
            // Writing to a `String` cannot fail.
            let _ = write!(line, " ({} events)", group.events);
        }
        line
    }
}

/// Joins `items` and, if `others > 0`, a final `"N others"` item, by the English rules:
/// `a`; `a and b`; `a, b, and c`.
///
/// ```
/// use whisper_proto::util::english_list;
///
/// assert_eq!(english_list(&["alice"], 0), "alice");
/// assert_eq!(english_list(&["alice", "carol"], 0), "alice and carol");
/// assert_eq!(english_list(&["alice", "carol", "dave"], 0), "alice, carol, and dave");
/// assert_eq!(english_list(&["alice"], 1), "alice and 1 other");
/// assert_eq!(english_list(&["alice", "carol"], 2), "alice, carol, and 2 others");
/// ```
pub fn english_list<S: AsRef<str>>(items: &[S], others: u64) -> String {
    let rest = match others {
        0 => None,
        1 => Some(String::from("1 other")),
        n => Some(format!("{n} others")),
    };
    let words: Vec<&str> = items
        .iter()
        .map(AsRef::as_ref)
        .chain(rest.as_deref())
        .collect();
    match words.as_slice() {
        [] => String::new(),
        [one] => String::from(*one),
        [first, second] => format!("{first} and {second}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

/// Settings of a [`LogBatcher`].
///
/// Start from [`LogBatcherConfig::default`] and set the fields to change:
///
/// ```
/// use whisper_proto::time::Duration;
/// use whisper_proto::util::LogBatcherConfig;
///
/// let mut config = LogBatcherConfig::default();
/// config.window = Duration::from_secs(1);
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct LogBatcherConfig {
    /// How long a group stays open after its first event. Default 3 s.
    pub window: Duration,
    /// The most groups open at once; opening one more flushes the oldest early. Default 64.
    pub max_groups: NonZeroUsize,
    /// The most actors listed per group; further ones count as "N others". Default 8.
    pub max_actors: NonZeroUsize,
    /// Keep debug-level events of every service, not only of verbose ones. Default off.
    pub verbose: bool,
}

impl Default for LogBatcherConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(3),
            max_groups: NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN),
            max_actors: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
            verbose: false,
        }
    }
}

/// Groups [`LogEvent`]s into one line per `(service, kind, target)` and window.
///
/// A group opens with its first event and closes `window` later (not `window` after its
/// last event, so a steady stream still produces a line per window).
///
/// # Bounds
///
/// - at most `max_groups` open groups; opening another flushes the oldest at once (its line
///   is returned by [`record`](Self::record)), so nothing is lost;
/// - at most `max_actors` distinct actors per group; more are counted as "N others";
/// - the per-service switches and formatters grow only by explicit configuration calls.
///
/// # Example
///
/// ```
/// use whisper_proto::time::{Duration, Instant};
/// use whisper_proto::util::{Group, LogBatcher, LogBatcherConfig, LogEvent};
///
/// let mut log = LogBatcher::new(LogBatcherConfig::default());
/// log.register_formatter("social", "tease", |g: &Group<'_>| {
///     format!("{} teased {}", g.actor_list(), g.target.unwrap_or("everyone"))
/// });
///
/// let t = Instant::from_secs(10);
/// for actor in ["alice", "carol", "dave"] {
///     let event = LogEvent::new("social", "tease", actor).with_target("bob");
///     assert_eq!(log.record(t, event), None);
/// }
/// assert_eq!(log.next_deadline(), Some(t + Duration::from_secs(3)));
/// assert_eq!(log.poll(t + Duration::from_secs(2)), None);
/// assert_eq!(
///     log.poll(t + Duration::from_secs(3)).as_deref(),
///     Some("[social] alice, carol, and dave teased bob")
/// );
///
/// // Important events skip the queue.
/// let now = LogEvent::new("sync", "failed", "erin").instant();
/// assert_eq!(log.record(t, now).as_deref(), Some("[sync] erin failed"));
/// ```
pub struct LogBatcher {
    config: LogBatcherConfig,
    /// Open groups in opening order, which is also deadline order.
    groups: LruMap<GroupKey, OpenGroup>,
    services: BTreeMap<Cow<'static, str>, Switches>,
    /// Service → kind → formatter.
    formatters: BTreeMap<Cow<'static, str>, BTreeMap<Cow<'static, str>, BoxedFormatter>>,
    /// The newest `now` seen; older instants are clamped to it.
    latest: Instant,
}

type BoxedFormatter = Box<dyn Formatter + Send>;

/// `(service, kind, target)`.
type GroupKey = (Cow<'static, str>, Cow<'static, str>, Option<String>);

#[derive(Clone, Debug)]
struct OpenGroup {
    deadline: Instant,
    actors: Vec<String>,
    others: u64,
    events: u64,
}

#[derive(Clone, Copy, Debug)]
struct Switches {
    enabled: bool,
    verbose: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            enabled: true,
            verbose: false,
        }
    }
}

impl LogBatcher {
    /// An empty batcher; every service starts enabled and not verbose.
    pub const fn new(config: LogBatcherConfig) -> Self {
        Self {
            config,
            groups: LruMap::new(),
            services: BTreeMap::new(),
            formatters: BTreeMap::new(),
            latest: Instant::ZERO,
        }
    }

    /// Enables or disables every event of `service`. Disabling does not drop groups
    /// already open.
    pub fn set_service_enabled(&mut self, service: impl Into<Cow<'static, str>>, enabled: bool) {
        self.services.entry(service.into()).or_default().enabled = enabled;
    }

    /// Keeps (`true`) or drops (`false`, the default) the debug and trace events of
    /// `service`.
    pub fn set_service_verbose(&mut self, service: impl Into<Cow<'static, str>>, verbose: bool) {
        self.services.entry(service.into()).or_default().verbose = verbose;
    }

    /// Keeps the debug and trace events of every service.
    pub const fn set_verbose(&mut self, verbose: bool) {
        self.config.verbose = verbose;
    }

    /// Formats groups of `kind` events from `service` with `formatter`, replacing any
    /// formatter registered before.
    pub fn register_formatter(
        &mut self,
        service: impl Into<Cow<'static, str>>,
        kind: impl Into<Cow<'static, str>>,
        formatter: impl Formatter + Send + 'static,
    ) {
        self.formatters
            .entry(service.into())
            .or_default()
            .insert(kind.into(), Box::new(formatter));
    }

    /// Takes in `event` at `now`. Returns a line to emit at once: the event's own line if it
    /// is [instant](LogEvent::instant), or the oldest group's line if it had to be flushed
    /// early to respect `max_groups`. Dropped events (disabled service, or debug level
    /// without verbose) return `None`.
    #[must_use = "a returned line must be emitted"]
    pub fn record(&mut self, now: Instant, event: LogEvent) -> Option<String> {
        let now = self.advance(now);
        if !self.keeps(&event) {
            return None;
        }
        let max_actors = self.config.max_actors.get();
        let key = (event.service, event.kind, event.target);
        if !event.instant {
            if let Some(open) = self.groups.get_mut(&key) {
                open.add(event.actor, event.count, max_actors);
                return None;
            }
        }
        let mut group = OpenGroup {
            deadline: now + self.config.window,
            actors: Vec::new(),
            others: 0,
            events: 0,
        };
        group.add(event.actor, event.count, max_actors);
        if event.instant {
            return Some(self.line(&key, &group));
        }
        let full = self.groups.len() >= self.config.max_groups.get();
        let evicted = if full { self.flush() } else { None };
        self.groups.insert(key, group);
        evicted
    }

    /// The line of the oldest group whose window has closed by `now`, if any.
    ///
    /// Call after: the timer armed from [`next_deadline`](Self::next_deadline) fires; repeat
    /// until it returns `None`.
    #[must_use = "a returned line must be emitted"]
    pub fn poll(&mut self, now: Instant) -> Option<String> {
        let now = self.advance(now);
        let (_, oldest) = self.groups.oldest()?;
        if oldest.deadline > now {
            return None;
        }
        self.flush()
    }

    /// The line of the oldest open group, whatever its deadline (e.g. at shutdown).
    #[must_use = "a returned line must be emitted"]
    pub fn flush(&mut self) -> Option<String> {
        let (key, group) = self.groups.pop_oldest()?;
        Some(self.line(&key, &group))
    }

    /// When the oldest open group closes.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.groups.oldest().map(|(_, group)| group.deadline)
    }

    /// Number of open groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether no group is open.
    pub fn is_empty(&self) -> bool {
        self.groups.len() == 0
    }

    /// The batcher's settings.
    pub const fn config(&self) -> &LogBatcherConfig {
        &self.config
    }

    fn advance(&mut self, now: Instant) -> Instant {
        self.latest = self.latest.max(now);
        self.latest
    }

    fn keeps(&self, event: &LogEvent) -> bool {
        let switches = self
            .services
            .get(event.service())
            .copied()
            .unwrap_or_default();
        let detail = event.level > Level::INFO;
        switches.enabled && (!detail || switches.verbose || self.config.verbose)
    }

    fn line(&self, (service, kind, target): &GroupKey, group: &OpenGroup) -> String {
        let view = Group {
            service,
            kind,
            target: target.as_deref(),
            actors: &group.actors,
            others: group.others,
            events: group.events,
        };
        let formatter = self
            .formatters
            .get(service.as_ref())
            .and_then(|kinds| kinds.get(kind.as_ref()));
        let body = match formatter {
            Some(formatter) => formatter.format(&view),
            None => DefaultFormatter.format(&view),
        };
        format!("[{service}] {body}")
    }
}

impl fmt::Debug for LogBatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let formatters: Vec<(&str, &str)> = self
            .formatters
            .iter()
            .flat_map(|(service, kinds)| kinds.keys().map(move |kind| (&**service, &**kind)))
            .collect();
        f.debug_struct("LogBatcher")
            .field("config", &self.config)
            .field("groups", &self.groups)
            .field("services", &self.services)
            .field("formatters", &formatters)
            .field("latest", &self.latest)
            .finish()
    }
}

impl OpenGroup {
    fn add(&mut self, actor: String, count: u64, max_actors: usize) {
        self.events = self.events.saturating_add(count);
        if self.actors.contains(&actor) {
            return;
        }
        if self.actors.len() < max_actors {
            self.actors.push(actor);
        } else {
            self.others = self.others.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn secs(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    fn batcher(max_groups: usize, max_actors: usize) -> LogBatcher {
        LogBatcher::new(LogBatcherConfig {
            max_groups: NonZeroUsize::new(max_groups).unwrap(),
            max_actors: NonZeroUsize::new(max_actors).unwrap(),
            ..LogBatcherConfig::default()
        })
    }

    fn drain(log: &mut LogBatcher, now: Instant) -> Vec<String> {
        core::iter::from_fn(|| log.poll(now)).collect()
    }

    #[test]
    fn english_list_rules() {
        assert_eq!(english_list::<&str>(&[], 0), "");
        assert_eq!(english_list::<&str>(&[], 3), "3 others");
        assert_eq!(english_list(&["a"], 0), "a");
        assert_eq!(english_list(&["a", "b"], 0), "a and b");
        assert_eq!(english_list(&["a", "b", "c"], 0), "a, b, and c");
        assert_eq!(english_list(&["a", "b", "c", "d"], 0), "a, b, c, and d");
        assert_eq!(english_list(&["a", "b", "c"], 1), "a, b, c, and 1 other");
    }

    #[test]
    fn groups_by_service_kind_and_target() {
        let mut log = batcher(8, 8);
        let events = [
            LogEvent::new("social", "teased", "alice").with_target("bob"),
            LogEvent::new("social", "teased", "carol").with_target("bob"),
            LogEvent::new("social", "teased", "dave").with_target("erin"),
            LogEvent::new("stash", "teased", "frank").with_target("bob"),
            LogEvent::new("social", "teased", "dave").with_target("bob"),
            LogEvent::new("social", "teased", "alice").with_target("bob"),
        ];
        for event in events {
            assert_eq!(log.record(secs(0), event), None);
        }
        assert_eq!(log.len(), 3);
        assert!(drain(&mut log, secs(2)).is_empty());
        assert_eq!(
            drain(&mut log, secs(3)),
            [
                "[social] alice, carol, and dave teased bob (4 events)",
                "[social] dave teased erin",
                "[stash] frank teased bob",
            ]
        );
        assert!(log.is_empty());
        assert_eq!(log.next_deadline(), None);
    }

    #[test]
    fn window_starts_at_the_first_event() {
        let mut log = batcher(8, 8);
        let _ = log.record(secs(0), LogEvent::new("sync", "pulled", "a"));
        let _ = log.record(secs(2), LogEvent::new("sync", "pulled", "b"));
        assert_eq!(log.poll(secs(3)).as_deref(), Some("[sync] a and b pulled"));
        let _ = log.record(secs(4), LogEvent::new("sync", "pulled", "c"));
        assert_eq!(log.next_deadline(), Some(secs(7)));
    }

    #[test]
    fn actor_overflow_counts_others() {
        let mut log = batcher(8, 2);
        for actor in ["a", "b", "a", "c", "d"] {
            let _ = log.record(secs(0), LogEvent::new("pex", "asked", actor));
        }
        assert_eq!(
            log.flush().as_deref(),
            Some("[pex] a, b, and 2 others asked (5 events)")
        );
    }

    #[test]
    fn full_batcher_flushes_oldest_group_early() {
        let mut log = batcher(2, 8);
        assert_eq!(log.record(secs(0), LogEvent::new("s", "k1", "a")), None);
        assert_eq!(log.record(secs(1), LogEvent::new("s", "k2", "a")), None);
        assert_eq!(log.record(secs(1), LogEvent::new("s", "k1", "b")), None);
        assert_eq!(
            log.record(secs(2), LogEvent::new("s", "k3", "a"))
                .as_deref(),
            Some("[s] a and b k1")
        );
        assert_eq!(log.len(), 2);
        assert_eq!(log.next_deadline(), Some(secs(4)));
    }

    #[test]
    fn switches_and_levels() {
        let mut log = batcher(8, 8);
        let debug = || {
            LogEvent::new("wire", "decoded", "a")
                .with_level(Level::DEBUG)
                .instant()
        };
        assert_eq!(log.record(secs(0), debug()), None);
        log.set_service_verbose("wire", true);
        assert!(log.record(secs(0), debug()).is_some());
        log.set_service_enabled("wire", false);
        assert_eq!(log.record(secs(0), debug()), None);
        let warn = LogEvent::new("wire", "dropped", "a")
            .with_level(Level::WARN)
            .instant();
        assert_eq!(log.record(secs(0), warn.clone()), None);
        log.set_service_enabled("wire", true);
        assert!(log.record(secs(0), warn).is_some());

        let other = LogEvent::new("pex", "decoded", "a")
            .with_level(Level::TRACE)
            .instant();
        assert_eq!(log.record(secs(0), other.clone()), None);
        log.set_verbose(true);
        assert_eq!(
            log.record(secs(0), other).as_deref(),
            Some("[pex] a decoded")
        );
    }

    #[test]
    fn formatters_are_per_service_and_kind() {
        let mut log = batcher(8, 8);
        log.register_formatter("rumor", "pushed", |g: &Group<'_>| {
            format!("{} pushed {} rumors", g.actor_list(), g.events)
        });
        let _ = log.record(secs(0), LogEvent::new("rumor", "pushed", "a").with_count(5));
        let _ = log.record(secs(0), LogEvent::new("rumor", "pushed", "b").with_count(2));
        let _ = log.record(secs(0), LogEvent::new("rumor", "acked", "b"));
        assert_eq!(
            drain(&mut log, secs(3)),
            ["[rumor] a and b pushed 7 rumors", "[rumor] b acked"]
        );
        assert!(format!("{log:?}").contains("pushed"));
    }

    #[test]
    fn older_now_is_clamped() {
        let mut log = batcher(8, 8);
        let _ = log.poll(secs(10));
        let _ = log.record(secs(1), LogEvent::new("s", "k", "a"));
        assert_eq!(log.next_deadline(), Some(secs(13)));
    }

    #[test]
    fn event_accessors() {
        let e = LogEvent::new("a", "b", "c".to_string())
            .with_count(3)
            .instant();
        assert_eq!((e.service(), e.kind(), e.target()), ("a", "b", None));
        assert_eq!(
            (e.count(), e.level(), e.is_instant()),
            (3, Level::INFO, true)
        );
        assert_eq!(targets::service_of("whisper::sync::pull"), "sync");
        assert_eq!(targets::service_of("hyper::client"), "hyper::client");
        assert!(targets::ALL.iter().all(|t| targets::service_of(t) != *t));
    }
}
