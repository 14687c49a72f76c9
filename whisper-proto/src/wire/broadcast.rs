//! The topic broadcast envelope: the payload of a G3 rumor between peers that both
//! advertised [`Capabilities::TOPICS`](super::Capabilities::TOPICS).
//!
//! ```text
//! kind u8 (= 0x01 TopicBroadcast; other values reserved)
//! | topicLen u8 (1..=255) | topic[topicLen] (UTF-8)
//! | expires u64   (Unix milliseconds by the origin's wall clock; 0 = never)
//! | nonce u64     (drawn from the origin's seeded RNG: two publishes of equal bytes differ)
//! | originLen u8 (1..=64) | origin[originLen]
//! | payload[..]   (the rest of the rumor)
//! ```
//!
//! The broadcast's identity is the rumor id of the whole envelope (BLAKE3-256), the one
//! id used for dedup everywhere. On a connection without `TOPICS` (a Go reference peer)
//! a G3 payload is a raw store record instead, as in the reference.
//!
//! A StatefulMerge record pushed as a rumor between `TOPICS` peers is a
//! [`TopicRecord`] envelope:
//!
//! ```text
//! kind u8 (= 0x02 TopicRecord)
//! | topicLen u8 (0..=255; 0 = the default StatefulMerge topic) | topic[topicLen]
//! | record[..]    (the rest of the rumor: one store record, as in a G1 body)
//! ```

use super::read_u64;
use crate::node::NodeId;
use alloc::string::String;
use bytes::{BufMut, Bytes, BytesMut};

/// The envelope kind byte of a topic broadcast.
pub const KIND_TOPIC_BROADCAST: u8 = 0x01;

/// The envelope kind byte of a pushed StatefulMerge record.
pub const KIND_TOPIC_RECORD: u8 = 0x02;

/// A StatefulMerge record pushed as a G3 rumor between `TOPICS` peers. The record is a
/// zero-copy slice of the rumor.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct TopicRecord {
    /// The topic's wire name: empty for the default StatefulMerge topic (as in G1
    /// field 16), else 1..=255 bytes of UTF-8.
    pub topic: String,
    /// One encoded store record.
    pub record: Bytes,
}

impl TopicRecord {
    /// The envelope's size.
    pub fn encoded_len(&self) -> usize {
        2 + self.topic.len() + self.record.len()
    }

    /// Encodes the envelope.
    pub fn encode(&self) -> Result<Bytes, BroadcastError> {
        if self.topic.len() > 255 {
            return Err(BroadcastError::Topic);
        }
        let mut out = BytesMut::with_capacity(self.encoded_len());
        out.put_u8(KIND_TOPIC_RECORD);
        out.put_u8(self.topic.len() as u8);
        out.put_slice(self.topic.as_bytes());
        out.put_slice(&self.record);
        Ok(out.freeze())
    }

    /// Decodes an envelope, zero-copy.
    pub fn decode(bytes: &Bytes) -> Result<Self, BroadcastError> {
        let b = bytes.as_ref();
        let kind = *b.first().ok_or(BroadcastError::Truncated)?;
        if kind != KIND_TOPIC_RECORD {
            return Err(BroadcastError::Kind(kind));
        }
        let topic_len = usize::from(*b.get(1).ok_or(BroadcastError::Truncated)?);
        let topic = b.get(2..2 + topic_len).ok_or(BroadcastError::Truncated)?;
        let topic = core::str::from_utf8(topic).map_err(|_| BroadcastError::Topic)?;
        Ok(Self {
            topic: String::from(topic),
            record: bytes.slice(2 + topic_len..),
        })
    }
}

/// A decoded topic broadcast. The payload is a zero-copy slice of the rumor.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct TopicBroadcast {
    /// The BroadcastOnly topic, 1..=255 bytes of UTF-8.
    pub topic: String,
    /// Expiry in Unix milliseconds by the origin's clock; 0 = never.
    pub expires_ms: u64,
    /// Makes equal payloads published twice distinct messages.
    pub nonce: u64,
    /// The publisher.
    pub origin: NodeId,
    /// The application's bytes.
    pub payload: Bytes,
}

/// Why a G3 payload is not a valid topic broadcast. The rumor is dropped and counted;
/// the connection stays open.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BroadcastError {
    /// Shorter than its layout says.
    #[error("broadcast envelope truncated")]
    Truncated,
    /// An envelope kind this version does not know.
    #[error("unknown broadcast envelope kind {0:#04x}")]
    Kind(u8),
    /// The topic is empty, too long or not UTF-8.
    #[error("bad broadcast topic")]
    Topic,
    /// The origin is empty or longer than 64 bytes.
    #[error("bad broadcast origin")]
    Origin,
}

impl TopicBroadcast {
    /// The envelope's size.
    pub fn encoded_len(&self) -> usize {
        1 + 1 + self.topic.len() + 8 + 8 + 1 + self.origin.as_bytes().len() + self.payload.len()
    }

    /// Encodes the envelope.
    pub fn encode(&self) -> Result<Bytes, BroadcastError> {
        if self.topic.is_empty() || self.topic.len() > 255 {
            return Err(BroadcastError::Topic);
        }
        let mut out = BytesMut::with_capacity(self.encoded_len());
        out.put_u8(KIND_TOPIC_BROADCAST);
        out.put_u8(self.topic.len() as u8);
        out.put_slice(self.topic.as_bytes());
        out.put_u64(self.expires_ms);
        out.put_u64(self.nonce);
        let origin = self.origin.as_bytes();
        out.put_u8(origin.len() as u8);
        out.put_slice(origin);
        out.put_slice(&self.payload);
        Ok(out.freeze())
    }

    /// Decodes an envelope, zero-copy.
    pub fn decode(bytes: &Bytes) -> Result<Self, BroadcastError> {
        let b = bytes.as_ref();
        let kind = *b.first().ok_or(BroadcastError::Truncated)?;
        if kind != KIND_TOPIC_BROADCAST {
            return Err(BroadcastError::Kind(kind));
        }
        let topic_len = usize::from(*b.get(1).ok_or(BroadcastError::Truncated)?);
        if topic_len == 0 {
            return Err(BroadcastError::Topic);
        }
        let topic = b.get(2..2 + topic_len).ok_or(BroadcastError::Truncated)?;
        let topic = core::str::from_utf8(topic).map_err(|_| BroadcastError::Topic)?;
        let mut at = 2 + topic_len;
        let expires_ms = read_u64(b, at).ok_or(BroadcastError::Truncated)?;
        let nonce = read_u64(b, at + 8).ok_or(BroadcastError::Truncated)?;
        at += 16;
        let origin_len = usize::from(*b.get(at).ok_or(BroadcastError::Truncated)?);
        at += 1;
        if b.len() < at + origin_len {
            return Err(BroadcastError::Truncated);
        }
        let origin = NodeId::new(bytes.slice(at..at + origin_len)).ok_or(BroadcastError::Origin)?;
        at += origin_len;
        Ok(Self {
            topic: String::from(topic),
            expires_ms,
            nonce,
            origin,
            payload: bytes.slice(at..),
        })
    }
}

/// A G3 payload between `TOPICS` peers, parsed once: the envelope its first byte names.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Envelope {
    /// A BroadcastOnly message ([`KIND_TOPIC_BROADCAST`]).
    Broadcast(TopicBroadcast),
    /// A StatefulMerge record ([`KIND_TOPIC_RECORD`]).
    Record(TopicRecord),
}

impl Envelope {
    /// Parses a G3 payload: a [`TopicRecord`] when its kind is [`KIND_TOPIC_RECORD`],
    /// else a [`TopicBroadcast`] (so any other kind is [`BroadcastError::Kind`]).
    pub fn decode(bytes: &Bytes) -> Result<Self, BroadcastError> {
        match bytes.first().copied() {
            Some(KIND_TOPIC_RECORD) => TopicRecord::decode(bytes).map(Self::Record),
            _ => TopicBroadcast::decode(bytes).map(Self::Broadcast),
        }
    }

    /// The topic as on the wire; empty for a record of the default StatefulMerge topic.
    pub fn topic(&self) -> &str {
        match self {
            Self::Broadcast(b) => &b.topic,
            Self::Record(r) => &r.topic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_envelope() {
        let m = TopicBroadcast {
            topic: "t".into(),
            expires_ms: 2,
            nonce: 3,
            origin: NodeId::from_static("o"),
            payload: Bytes::from_static(b"hi"),
        };
        let bytes = m.encode().unwrap();
        assert_eq!(
            bytes.as_ref(),
            &[
                1, 1, b't', 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 1, b'o', b'h', b'i'
            ]
        );
        assert_eq!(TopicBroadcast::decode(&bytes).unwrap(), m);
        for cut in 0..bytes.len() - 2 {
            assert!(TopicBroadcast::decode(&bytes.slice(..cut)).is_err());
        }
        assert_eq!(
            TopicBroadcast::decode(&Bytes::from_static(&[2])),
            Err(BroadcastError::Kind(2))
        );
    }

    #[test]
    fn golden_record_envelope() {
        let r = TopicRecord {
            topic: "t".into(),
            record: Bytes::from_static(b"rec"),
        };
        let bytes = r.encode().unwrap();
        assert_eq!(bytes.as_ref(), &[2, 1, b't', b'r', b'e', b'c']);
        assert_eq!(TopicRecord::decode(&bytes).unwrap(), r);
        let d = TopicRecord {
            topic: String::new(),
            record: Bytes::from_static(b"x"),
        };
        assert_eq!(d.encode().unwrap().as_ref(), &[2, 0, b'x']);
        assert_eq!(
            TopicRecord::decode(&Bytes::from_static(&[2, 3, b'a'])),
            Err(BroadcastError::Truncated)
        );
        assert_eq!(
            TopicRecord::decode(&Bytes::from_static(&[1])),
            Err(BroadcastError::Kind(1))
        );
    }

    quickcheck::quickcheck! {
        fn decode_never_panics(bytes: alloc::vec::Vec<u8>) -> bool {
            let _ = TopicBroadcast::decode(&Bytes::from(bytes.clone()));
            let _ = TopicRecord::decode(&Bytes::from(bytes));
            true
        }
    }
}
