//! Topics: named channels in one of three modes (seed `TopicMode`, reference §r).
//!
//! * [`TopicMode::BroadcastOnly`]: firehose pub/sub. [`Engine::publish`] floods a
//!   message to every connected member (G3, deduplicated by rumor id); each member
//!   that [subscribed](crate::Engine::subscribe) gets it once as [`Event::Message`],
//!   unless its [`TopicConfig::ttl`] has passed.
//! * [`TopicMode::StatefulMerge`]: a [`StateStore`] synchronised by G1 exchanges (delta
//!   or full, see [`crate::delta`]), skipped by G2 when fingerprints match.
//! * [`TopicMode::RequestResponse`]: [`Engine::query`] asks every connected peer that
//!   serves the topic; each answers through its registered [`QueryHandler`]; the replies
//!   come back as one [`Event::QueryComplete`].
//!
//! The wire representation is in [`crate::wire::codec`] (G1 fields 16–19) and
//! [`crate::wire::TopicBroadcast`] (G3 payload).
//!
//! [`Engine::publish`]: crate::Engine::publish
//! [`Engine::query`]: crate::Engine::query
//! [`Event::Message`]: crate::Event::Message
//! [`Event::QueryComplete`]: crate::Event::QueryComplete

use crate::node::NodeId;
use crate::store::StateStore;
use crate::time::Duration;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::fmt;

/// A topic's gossip semantics (seed `TopicMode`; the numbers are the reference's).
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
#[repr(u8)]
pub enum TopicMode {
    /// Firehose pub/sub: no state, no merge, no delta sync.
    BroadcastOnly = 0,
    /// Delta sync with merge-on-apply through a [`StateStore`].
    StatefulMerge = 1,
    /// Solicit/reply: a query goes to the peers serving the topic, which reply.
    RequestResponse = 2,
}

impl fmt::Display for TopicMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BroadcastOnly => "BroadcastOnly",
            Self::StatefulMerge => "StatefulMerge",
            Self::RequestResponse => "RequestResponse",
        })
    }
}

/// Answers queries for a RequestResponse topic. Called synchronously from
/// [`Engine::handle_bytes`](crate::Engine::handle_bytes) when a query arrives.
pub trait QueryHandler {
    /// The reply to `payload` from `from`, or `None` to send nothing (the querier stops
    /// waiting for this node at its deadline). A reply larger than the G1 cap is
    /// dropped and counted.
    fn handle(&mut self, from: &NodeId, topic: &str, payload: &[u8]) -> Option<Bytes>;
}

impl<F> QueryHandler for F
where
    F: FnMut(&NodeId, &str, &[u8]) -> Option<Bytes>,
{
    fn handle(&mut self, from: &NodeId, topic: &str, payload: &[u8]) -> Option<Bytes> {
        self(from, topic, payload)
    }
}

/// How to register a topic (seed `TopicConfig`). Build one with
/// [`TopicConfig::broadcast`], [`TopicConfig::stateful`] or
/// [`TopicConfig::request_response`].
pub struct TopicConfig {
    /// The mode.
    pub mode: TopicMode,
    /// Required for [`TopicMode::StatefulMerge`], ignored otherwise.
    pub store: Option<Box<dyn StateStore + Send>>,
    /// Required for [`TopicMode::RequestResponse`], ignored otherwise.
    pub handler: Option<Box<dyn QueryHandler + Send>>,
    /// BroadcastOnly: how long a message may be delivered after it was published
    /// (`None` = no expiry). Checked by every receiver against the origin's wall clock,
    /// so it assumes loosely synchronised clocks.
    pub ttl: Option<Duration>,
    /// 0 = default; higher = preferred. Stateful topics are exchanged in descending
    /// priority order within a round (the egress limiter will use it too).
    pub priority: i32,
}

impl TopicConfig {
    /// A BroadcastOnly topic.
    pub fn broadcast() -> Self {
        Self {
            mode: TopicMode::BroadcastOnly,
            store: None,
            handler: None,
            ttl: None,
            priority: 0,
        }
    }

    /// A StatefulMerge topic over `store`.
    pub fn stateful(store: impl StateStore + Send + 'static) -> Self {
        Self {
            mode: TopicMode::StatefulMerge,
            store: Some(Box::new(store)),
            ..Self::broadcast()
        }
    }

    /// A RequestResponse topic answered by `handler`.
    pub fn request_response(handler: impl QueryHandler + Send + 'static) -> Self {
        Self {
            mode: TopicMode::RequestResponse,
            handler: Some(Box::new(handler)),
            ..Self::broadcast()
        }
    }

    /// With a message TTL (BroadcastOnly).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// With a priority.
    #[must_use]
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
}

impl fmt::Debug for TopicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicConfig")
            .field("mode", &self.mode)
            .field("store", &self.store.is_some())
            .field("handler", &self.handler.is_some())
            .field("ttl", &self.ttl)
            .field("priority", &self.priority)
            .finish()
    }
}

/// Why a topic could not be registered or subscribed. The registry is unchanged.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// A topic of that name exists.
    #[error("topic {0:?} already registered")]
    Duplicate(String),
    /// StatefulMerge without a store.
    #[error("StatefulMerge topic requires a StateStore")]
    StoreMissing,
    /// RequestResponse without a handler.
    #[error("RequestResponse topic requires a QueryHandler")]
    HandlerMissing,
    /// Names are 1..=255 bytes.
    #[error("topic names are 1..=255 bytes")]
    InvalidName,
    /// [`TopicRegistry::MAX_TOPICS`] topics are registered.
    #[error("too many topics")]
    TooMany,
    /// No topic of that name.
    #[error("topic {0:?} not registered")]
    NotFound(String),
    /// The topic has another mode than the operation needs.
    #[error("topic is {actual}, not {expected}")]
    WrongMode {
        /// What the operation needs.
        expected: TopicMode,
        /// What the topic is.
        actual: TopicMode,
    },
}

/// A registered topic.
pub(crate) struct Topic {
    pub(crate) mode: TopicMode,
    pub(crate) store: Option<Box<dyn StateStore + Send>>,
    pub(crate) handler: Option<Box<dyn QueryHandler + Send>>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) priority: i32,
    pub(crate) subscribed: bool,
    pub(crate) delta: Option<crate::delta::DeltaTracker>,
    /// Registration order, to find the default stateful topic.
    pub(crate) seq: u32,
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic")
            .field("mode", &self.mode)
            .field("fingerprint", &self.store.as_ref().map(|s| s.fingerprint()))
            .field("handler", &self.handler.is_some())
            .field("ttl", &self.ttl)
            .field("priority", &self.priority)
            .field("subscribed", &self.subscribed)
            .finish()
    }
}

/// The topics of one engine (seed `TopicRegistry`). At most
/// [`TopicRegistry::MAX_TOPICS`].
#[derive(Debug, Default)]
pub struct TopicRegistry {
    pub(crate) topics: BTreeMap<String, Topic>,
    pub(crate) default_stateful: Option<String>,
    next_seq: u32,
}

impl TopicRegistry {
    /// The most topics one engine registers.
    pub const MAX_TOPICS: usize = 256;

    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `name`. Checks, in the reference's order: duplicate, StatefulMerge
    /// without a store, RequestResponse without a handler; then the name and the bound.
    ///
    /// # Errors
    /// [`TopicError`]; the registry is unchanged.
    pub(crate) fn register(
        &mut self,
        name: &str,
        config: TopicConfig,
        full_sync_base: core::num::NonZeroU32,
    ) -> Result<(), TopicError> {
        if self.topics.contains_key(name) {
            return Err(TopicError::Duplicate(String::from(name)));
        }
        if config.mode == TopicMode::StatefulMerge && config.store.is_none() {
            return Err(TopicError::StoreMissing);
        }
        if config.mode == TopicMode::RequestResponse && config.handler.is_none() {
            return Err(TopicError::HandlerMissing);
        }
        if name.is_empty() || name.len() > 255 {
            return Err(TopicError::InvalidName);
        }
        if self.topics.len() >= Self::MAX_TOPICS {
            return Err(TopicError::TooMany);
        }
        let stateful = config.mode == TopicMode::StatefulMerge;
        if stateful && self.default_stateful.is_none() {
            self.default_stateful = Some(String::from(name));
        }
        let topic = Topic {
            mode: config.mode,
            store: if stateful { config.store } else { None },
            handler: config.handler,
            ttl: config.ttl,
            priority: config.priority,
            subscribed: false,
            delta: stateful.then(|| crate::delta::DeltaTracker::new(full_sync_base)),
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.topics.insert(String::from(name), topic);
        Ok(())
    }

    /// The mode of `name`.
    pub fn mode(&self, name: &str) -> Option<TopicMode> {
        self.topics.get(name).map(|t| t.mode)
    }

    /// The priority of `name`.
    pub fn priority(&self, name: &str) -> Option<i32> {
        self.topics.get(name).map(|t| t.priority)
    }

    /// The TTL of `name`.
    pub fn ttl(&self, name: &str) -> Option<Duration> {
        self.topics.get(name).and_then(|t| t.ttl)
    }

    /// Every topic name, in order.
    pub fn all(&self) -> impl Iterator<Item = &str> + '_ {
        self.topics.keys().map(String::as_str)
    }

    /// How many topics are registered.
    pub fn count(&self) -> usize {
        self.topics.len()
    }

    /// The default StatefulMerge topic: the first registered. Its G1 exchanges carry no
    /// topic field, so it is the one a single-topic (or Go reference) peer syncs.
    pub fn default_stateful(&self) -> Option<&str> {
        self.default_stateful.as_deref()
    }

    /// StatefulMerge topics in exchange order: descending priority, then registration
    /// order.
    pub(crate) fn stateful_in_order(&self) -> Vec<String> {
        let mut v: Vec<(&String, &Topic)> = self
            .topics
            .iter()
            .filter(|(_, t)| t.mode == TopicMode::StatefulMerge)
            .collect();
        v.sort_by_key(|(_, t)| (core::cmp::Reverse(t.priority), t.seq));
        v.into_iter().map(|(n, _)| n.clone()).collect()
    }

    /// RequestResponse topics this node serves.
    pub(crate) fn served(&self) -> Vec<Bytes> {
        self.topics
            .iter()
            .filter(|(_, t)| t.mode == TopicMode::RequestResponse)
            .map(|(n, _)| Bytes::copy_from_slice(n.as_bytes()))
            .collect()
    }

    /// Subscribed BroadcastOnly topics.
    pub fn subscribers(&self) -> usize {
        self.topics.values().filter(|t| t.subscribed).count()
    }
}

/// Identifies one [`Engine::query`](crate::Engine::query) until its
/// [`Event::QueryComplete`](crate::Event::QueryComplete).
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct QueryId(pub u64);

impl fmt::Display for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "q{}", self.0)
    }
}

/// One reply to a query.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct QueryReply {
    /// The responder.
    pub from: NodeId,
    /// Its answer.
    pub payload: Bytes,
}

/// Why [`Engine::publish`](crate::Engine::publish) refused. Nothing was sent.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Unknown or wrong-mode topic.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The envelope would exceed [`crate::wire::Limits::max_rumor_send`].
    #[error("broadcast of {len} bytes exceeds the rumor send cap {max}")]
    TooLarge {
        /// Envelope length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The driver has not drained [`Engine::poll_action`](crate::Engine::poll_action).
    #[error("action queue full")]
    QueueFull,
    /// The engine is overloaded (outbound queue, egress or CPU): retry later, drop, or
    /// raise the topic's priority.
    #[error("publish rejected: engine overloaded ({0})")]
    Backpressure(Pressure),
}

/// Which limit refused an outbound message (see `engine/flow.rs`).
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Pressure {
    /// The queued actions reached the overload threshold (priority ≤ 0 only).
    #[error("outbound queue over its threshold")]
    Queue,
    /// The global egress bucket cannot take the bytes at this priority.
    #[error("egress limit")]
    Egress,
    /// The CPU gate is closed.
    #[error("CPU gate")]
    Cpu,
}

/// Why [`Engine::query`](crate::Engine::query) refused. Nothing was sent.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// Unknown or wrong-mode topic.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// No connected peer announced that it serves the topic.
    #[error("no connected peer serves the topic")]
    NoResponders,
    /// [`Config::max_pending_queries`](crate::Config::max_pending_queries) are open.
    #[error("too many pending queries")]
    TooManyPending,
    /// The query would exceed the G1 cap.
    #[error("query of {len} bytes exceeds the G1 cap {max}")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The driver has not drained [`Engine::poll_action`](crate::Engine::poll_action).
    #[error("action queue full")]
    QueueFull,
    /// The engine is overloaded (egress or CPU).
    #[error("query rejected: engine overloaded ({0})")]
    Backpressure(Pressure),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use core::num::NonZeroU32;

    fn base() -> NonZeroU32 {
        NonZeroU32::new(10).unwrap()
    }

    #[test]
    fn registration_errors_in_reference_order() {
        let mut r = TopicRegistry::new();
        let store = || MemStore::new(NodeId::from_static("a"), [0; 32]);
        r.register("s", TopicConfig::stateful(store()), base())
            .unwrap();
        assert_eq!(
            r.register("s", TopicConfig::broadcast(), base()),
            Err(TopicError::Duplicate("s".into()))
        );
        let mut no_store = TopicConfig::broadcast();
        no_store.mode = TopicMode::StatefulMerge;
        assert_eq!(
            r.register("x", no_store, base()),
            Err(TopicError::StoreMissing)
        );
        let mut no_handler = TopicConfig::broadcast();
        no_handler.mode = TopicMode::RequestResponse;
        assert_eq!(
            r.register("y", no_handler, base()),
            Err(TopicError::HandlerMissing)
        );
        assert_eq!(
            r.register("", TopicConfig::broadcast(), base()),
            Err(TopicError::InvalidName)
        );
        r.register(
            "q",
            TopicConfig::request_response(|_: &NodeId, _: &str, p: &[u8]| {
                Some(Bytes::copy_from_slice(p))
            }),
            base(),
        )
        .unwrap();
        r.register(
            "hi",
            TopicConfig::stateful(store()).with_priority(5),
            base(),
        )
        .unwrap();
        assert_eq!(r.default_stateful(), Some("s"));
        assert_eq!(r.stateful_in_order(), ["hi", "s"]);
        assert_eq!(r.count(), 3);
        assert_eq!(r.mode("q"), Some(TopicMode::RequestResponse));
        assert_eq!(TopicMode::StatefulMerge.to_string(), "StatefulMerge");
    }

    use alloc::string::ToString;
}
