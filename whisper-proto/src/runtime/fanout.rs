//! Event fan-out to any number of bounded subscriber channels.

use std::fmt;
use std::string::String;
use std::sync::{Arc, Mutex, PoisonError};
use std::vec::Vec;

use async_channel::{Sender, TrySendError};

use super::EventStream;
use crate::action::Event;

/// The subscribers of one node, shared between its loop and its handles.
///
/// Each subscriber has its own bounded channel
/// ([`DriverConfig::event_capacity`](crate::driver::DriverConfig::event_capacity)); one
/// that falls behind loses events (counted in [`Subscribers::dropped`]) rather than
/// growing memory or stalling the node. Clones share the same list.
#[derive(Clone, Default)]
pub struct Subscribers {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// Each channel with its topic filter (`None`: every event).
    sinks: Vec<(Sender<Event>, Option<String>)>,
    dropped: u64,
}

impl fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("Subscribers")
            .field("subscribers", &inner.sinks.len())
            .field("dropped", &inner.dropped)
            .finish()
    }
}

impl Subscribers {
    /// No subscribers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new subscription to every event delivered from now on.
    pub fn subscribe(&self, capacity: usize) -> EventStream {
        let (tx, rx) = async_channel::bounded(capacity.max(1));
        self.lock().sinks.push((tx, None));
        EventStream::new(rx)
    }

    /// A new subscription to the [`Event::Message`]s of `topic` only.
    pub fn subscribe_topic(&self, capacity: usize, topic: impl Into<String>) -> EventStream {
        let (tx, rx) = async_channel::bounded(capacity.max(1));
        self.lock().sinks.push((tx, Some(topic.into())));
        EventStream::new(rx)
    }

    /// Offers `event` to every subscriber; forgets closed ones. Never blocks.
    pub fn deliver(&self, event: &Event) {
        let mut inner = self.lock();
        let mut dropped = 0;
        let message_topic = match event {
            Event::Message { topic, .. } => Some(topic.as_str()),
            _ => None,
        };
        inner.sinks.retain(|(sink, filter)| {
            if let Some(want) = filter {
                if message_topic != Some(want.as_str()) {
                    return true;
                }
            }
            match sink.try_send(event.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    dropped += 1;
                    true
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        inner.dropped += dropped;
    }

    /// Live subscribers.
    pub fn len(&self) -> usize {
        self.lock().sinks.len()
    }

    /// Whether there are no subscribers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events dropped because a subscriber's channel was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Removes every subscriber, ending their streams.
    pub fn clear(&self) {
        self.lock().sinks.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeId;
    use bytes::Bytes;

    fn digest(n: &'static str) -> Event {
        Event::DigestMatch {
            peer: NodeId::from_static(n),
        }
    }

    #[test]
    fn a_slow_subscriber_loses_events_and_a_gone_one_is_forgotten() {
        let subs = Subscribers::new();
        let mut slow = subs.subscribe(2);
        let mut fast = subs.subscribe(8);
        drop(subs.subscribe(8));
        for n in ["a", "b", "c", "d", "e"] {
            subs.deliver(&digest(n));
        }
        assert_eq!(subs.len(), 2);
        assert_eq!(subs.dropped(), 3);
        assert_eq!(slow.try_next(), Some(digest("a")));
        assert_eq!(slow.try_next(), Some(digest("b")));
        assert_eq!(slow.try_next(), None);
        assert_eq!((0..5).filter_map(|_| fast.try_next()).count(), 5);
        subs.clear();
        assert!(subs.is_empty());
        assert_eq!(fast.try_next(), None);
    }

    #[test]
    fn a_topic_subscriber_gets_only_its_topics_messages() {
        let subs = Subscribers::new();
        let mut chat = subs.subscribe_topic(8, "chat");
        let message = |topic: &str| Event::Message {
            topic: String::from(topic),
            from: NodeId::from_static("x"),
            payload: Bytes::from_static(b"hi"),
            id: crate::rumor::rumor_id(topic.as_bytes()),
            hop: 1,
        };
        subs.deliver(&message("chat"));
        subs.deliver(&message("news"));
        subs.deliver(&digest("x"));
        assert_eq!(chat.try_next(), Some(message("chat")));
        assert_eq!(chat.try_next(), None);
    }
}
