//! G1 body codecs.
//!
//! The G1 frame carries an opaque body; a [`G1Codec`] turns it into an [`ExchangeBody`]
//! and back. The default, [`ProtobufCodec`], is the protobuf envelope of the deployed Go
//! mesh (loom's `gossip.proto`, package `hstles.mesh.gossip.v1`):
//!
//! ```text
//! message GossipEnvelope { ExchangeMeta meta = 1; repeated bytes records = 2;
//!                          string topic = 16; /* whisper extension */ }
//! message ExchangeMeta   { uint64 cache_fingerprint = 1; string region = 2;
//!                          bool backpressure_signal = 3; repeated PEXEntry pex_entries = 4;
//!                          map<string, int32> connection_counts = 5; ConnectionOffer offer = 6; }
//! message PEXEntry       { string node_id = 1; repeated string addresses = 2;
//!                          int64 timestamp_unix = 3; bytes signature = 4; string region = 5; }
//! message ConnectionOffer{ string from_node_id = 1; string to_node_id = 2;
//!                          repeated string addresses = 3; string transport = 4;
//!                          int64 timestamp_unix = 5; bytes signature = 6; }
//! ```
//!
//! # The topic extension (fields 16–19)
//!
//! The Go mesh cannot name a topic on the wire, and carries nothing but state exchanges
//! in G1. whisper extends the envelope with four fields. Each is written only when it
//! differs from its proto3 default, so **a single-topic deployment's bytes equal the
//! reference's**, and a Go peer skips all of them as unknown fields:
//!
//! ```text
//! message GossipEnvelope { ...;
//!     string topic    = 16;  // empty = the default StatefulMerge topic
//!     uint32 kind     = 17;  // 0 Exchange (omitted), 1 Query, 2 Response, 3 Announce
//!     uint64 query_id = 18;  // Query and Response only
//!     bool   more     = 19;  // Exchange only: the sender has more records for this topic
//! }
//! ```
//!
//! * **Exchange (kind 0)** is the reference's G1 state exchange. `topic` names the
//!   StatefulMerge topic; it is omitted for the *default* topic (the first StatefulMerge
//!   topic registered), which is the only one a peer without
//!   [`Capabilities::TOPICS`](super::Capabilities::TOPICS) is ever offered.
//!   `more` is set when the sender's records did not fit under the G1 cap: the
//!   initiator keeps exchanging on the same topic until neither side sets it.
//! * **Query (kind 1)** carries one request for a RequestResponse topic: `topic`,
//!   `query_id` (the querier's id) and the payload as the single element of `records`.
//! * **Response (kind 2)** answers a query: the same `topic` and `query_id`, the reply as
//!   the single element of `records`.
//! * **Announce (kind 3)** lists, as `records`, the names of the RequestResponse topics
//!   the sender serves. It replaces the previous announcement on that connection.
//!
//! Kinds 1–3 are sent only to peers that advertised `TOPICS`. They are not part of the
//! exchange request/reply alternation: either side may send them at any time and they
//! are never answered with an exchange. Unknown kinds are dropped and counted.
//!
//! **Never empty.** A zero-length G1 is a keepalive, so an envelope that would encode to
//! nothing (an empty reply from a node with an empty store) is written as an empty
//! `meta` (`0a 00`), which every protobuf decoder reads as the same empty envelope.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::{Bytes, BytesMut};
use prost::Message;

/// One side of a G1 exchange, decoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExchangeBody {
    /// Piggybacked metadata.
    pub meta: ExchangeMeta,
    /// Opaque store records.
    pub records: Vec<Bytes>,
    /// The topic; empty means the default (single-topic) topic and is not written.
    pub topic: String,
    /// What the body is (field 17); [`BodyKind::Exchange`] is not written.
    pub kind: BodyKind,
    /// The query a [`BodyKind::Query`] or [`BodyKind::Response`] belongs to (field 18).
    pub query_id: u64,
    /// The sender has more records for this topic than fitted under the G1 cap (field 19).
    pub more: bool,
}

/// What a G1 body carries (envelope field 17). See the [module docs](self).
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum BodyKind {
    /// A state exchange (request or reply): the reference's only kind.
    #[default]
    Exchange,
    /// A request for a RequestResponse topic.
    Query,
    /// A reply to a [`BodyKind::Query`].
    Response,
    /// The RequestResponse topics the sender serves.
    Announce,
    /// A kind this version does not know; dropped and counted.
    Unknown(u32),
}

impl BodyKind {
    /// The field-17 value.
    pub const fn to_u32(self) -> u32 {
        match self {
            Self::Exchange => 0,
            Self::Query => 1,
            Self::Response => 2,
            Self::Announce => 3,
            Self::Unknown(v) => v,
        }
    }

    /// The kind a field-17 value stands for.
    pub const fn from_u32(v: u32) -> Self {
        match v {
            0 => Self::Exchange,
            1 => Self::Query,
            2 => Self::Response,
            3 => Self::Announce,
            other => Self::Unknown(other),
        }
    }
}

/// Metadata piggybacked on every G1 exchange.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExchangeMeta {
    /// The sender's state fingerprint (0 = none).
    pub cache_fingerprint: u64,
    /// The sender's region.
    pub region: String,
    /// True while the sender is overloaded and asks peers to back off.
    pub backpressure_signal: bool,
    /// Signed peer-exchange entries.
    pub pex_entries: Vec<PexEntry>,
    /// Connection counts by transport or class.
    pub connection_counts: BTreeMap<String, i32>,
    /// An offer to connect directly.
    pub offer: Option<ConnectionOffer>,
}

/// A signed peer-exchange entry.
#[derive(Clone, PartialEq, Message)]
pub struct PexEntry {
    /// The advertised node.
    #[prost(string, tag = "1")]
    pub node_id: String,
    /// Its addresses.
    #[prost(string, repeated, tag = "2")]
    pub addresses: Vec<String>,
    /// When it was signed, Unix seconds (0 = unknown).
    #[prost(int64, tag = "3")]
    pub timestamp_unix: i64,
    /// ed25519 signature over the canonical payload.
    #[prost(bytes = "bytes", tag = "4")]
    pub signature: Bytes,
    /// Its region.
    #[prost(string, tag = "5")]
    pub region: String,
}

/// An offer to open a direct connection.
#[derive(Clone, PartialEq, Message)]
pub struct ConnectionOffer {
    /// The offering node.
    #[prost(string, tag = "1")]
    pub from_node_id: String,
    /// The node the offer is for.
    #[prost(string, tag = "2")]
    pub to_node_id: String,
    /// Where to reach the offering node.
    #[prost(string, repeated, tag = "3")]
    pub addresses: Vec<String>,
    /// Offered transports, comma-separated.
    #[prost(string, tag = "4")]
    pub transport: String,
    /// When it was made, Unix seconds.
    #[prost(int64, tag = "5")]
    pub timestamp_unix: i64,
    /// Signature.
    #[prost(bytes = "bytes", tag = "6")]
    pub signature: Bytes,
}

#[derive(Clone, PartialEq, Message)]
struct PbMeta {
    #[prost(uint64, tag = "1")]
    cache_fingerprint: u64,
    #[prost(string, tag = "2")]
    region: String,
    #[prost(bool, tag = "3")]
    backpressure_signal: bool,
    #[prost(message, repeated, tag = "4")]
    pex_entries: Vec<PexEntry>,
    #[prost(btree_map = "string, int32", tag = "5")]
    connection_counts: BTreeMap<String, i32>,
    #[prost(message, optional, tag = "6")]
    offer: Option<ConnectionOffer>,
}

#[derive(Clone, PartialEq, Message)]
struct PbEnvelope {
    #[prost(message, optional, tag = "1")]
    meta: Option<PbMeta>,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    records: Vec<Bytes>,
    #[prost(string, tag = "16")]
    topic: String,
    #[prost(uint32, tag = "17")]
    kind: u32,
    #[prost(uint64, tag = "18")]
    query_id: u64,
    #[prost(bool, tag = "19")]
    more: bool,
}

/// Why a G1 body could not be encoded or decoded. The exchange is answered with an
/// empty reply or the connection closed, never left waiting; no state changes.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The body is not a valid envelope.
    #[error("G1 body does not decode: {0}")]
    Decode(&'static str),
    /// The encoded body would exceed the G1 cap.
    #[error("G1 body of {len} bytes exceeds the cap of {max}")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The cap.
        max: usize,
    },
}

/// Encodes and decodes G1 bodies. Implementations MUST be deterministic (equal inputs
/// give equal bytes) and MUST NOT allocate more than a small multiple of the body length
/// when decoding.
pub trait G1Codec: core::fmt::Debug + Send {
    /// Appends the encoding of `body` to `out`.
    fn encode(&self, body: &ExchangeBody, out: &mut BytesMut) -> Result<(), CodecError>;
    /// Decodes a whole body (zero-copy where the codec can).
    fn decode(&self, body: Bytes) -> Result<ExchangeBody, CodecError>;
}

/// The protobuf envelope of the deployed Go mesh, plus whisper's topic field.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProtobufCodec;

impl G1Codec for ProtobufCodec {
    fn encode(&self, body: &ExchangeBody, out: &mut BytesMut) -> Result<(), CodecError> {
        let m = &body.meta;
        let meta_is_empty = *m == ExchangeMeta::default();
        let env = PbEnvelope {
            meta: (!meta_is_empty).then(|| PbMeta {
                cache_fingerprint: m.cache_fingerprint,
                region: m.region.clone(),
                backpressure_signal: m.backpressure_signal,
                pex_entries: m.pex_entries.clone(),
                connection_counts: m.connection_counts.clone(),
                offer: m.offer.clone(),
            }),
            records: body.records.clone(),
            topic: body.topic.clone(),
            kind: body.kind.to_u32(),
            query_id: body.query_id,
            more: body.more,
        };
        let len = env.encoded_len();
        if len == 0 {
            // A zero-length G1 is a keepalive: write an empty meta instead.
            out.extend_from_slice(&[0x0a, 0x00]);
            return Ok(());
        }
        out.reserve(len);
        env.encode(out)
            .map_err(|_| CodecError::Decode("encode buffer"))
    }

    fn decode(&self, body: Bytes) -> Result<ExchangeBody, CodecError> {
        let env = PbEnvelope::decode(body).map_err(|_| CodecError::Decode("protobuf"))?;
        let meta = env
            .meta
            .map(|m| ExchangeMeta {
                cache_fingerprint: m.cache_fingerprint,
                region: m.region,
                backpressure_signal: m.backpressure_signal,
                pex_entries: m.pex_entries,
                connection_counts: m.connection_counts,
                offer: m.offer,
            })
            .unwrap_or_default();
        Ok(ExchangeBody {
            meta,
            records: env.records,
            topic: env.topic,
            kind: BodyKind::from_u32(env.kind),
            query_id: env.query_id,
            more: env.more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn hex(b: &[u8]) -> String {
        use core::fmt::Write;
        let mut s = String::new();
        for x in b {
            let _ = write!(s, "{x:02x}");
        }
        s
    }

    fn enc(body: &ExchangeBody) -> Vec<u8> {
        let mut out = BytesMut::new();
        ProtobufCodec.encode(body, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn golden_records_and_fingerprint() {
        let body = ExchangeBody {
            meta: ExchangeMeta {
                cache_fingerprint: 0x0102,
                backpressure_signal: true,
                ..Default::default()
            },
            records: vec![Bytes::from_static(b"ab"), Bytes::from_static(b"c")],
            ..Default::default()
        };
        // meta (field 1, len 5): fp (08 82 02) + bp (18 01); records (12 02 'ab'), (12 01 'c').
        assert_eq!(
            hex(&enc(&body)),
            "0a050882021801120261621201 63".replace(' ', "")
        );
        assert_eq!(ProtobufCodec.decode(Bytes::from(enc(&body))).unwrap(), body);
    }

    #[test]
    fn golden_empty_and_topic_extension() {
        // Never empty: an empty envelope is an empty meta, not a keepalive.
        assert_eq!(hex(&enc(&ExchangeBody::default())), "0a00");
        assert_eq!(
            ProtobufCodec
                .decode(Bytes::from_static(&[0x0a, 0x00]))
                .unwrap(),
            ExchangeBody::default()
        );
        let body = ExchangeBody {
            topic: "t".into(),
            ..Default::default()
        };
        // Field 16, wire type 2 → key varint 0x82 0x01.
        assert_eq!(hex(&enc(&body)), "82010174");
        assert_eq!(ProtobufCodec.decode(Bytes::from(enc(&body))).unwrap(), body);
    }

    #[test]
    fn golden_pex_counts_offer() {
        let mut counts = BTreeMap::new();
        counts.insert(String::from("q"), 2);
        let body = ExchangeBody {
            meta: ExchangeMeta {
                pex_entries: vec![PexEntry {
                    node_id: "n".into(),
                    addresses: vec!["a".into()],
                    timestamp_unix: 1,
                    signature: Bytes::from_static(b"s"),
                    region: "r".into(),
                }],
                connection_counts: counts,
                offer: Some(ConnectionOffer {
                    from_node_id: "f".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        // PEXEntry: 0a016e 120161 1801 220173 2a0172 (15 bytes)
        // counts entry: 2a 05 (0a0171 1002); offer: 32 03 (0a0166)
        let pex = "0a016e12016118012201732a0172";
        let want = format!("0a1c220e{pex}2a050a0171100232030a0166");
        assert_eq!(hex(&enc(&body)), want);
        assert_eq!(ProtobufCodec.decode(Bytes::from(enc(&body))).unwrap(), body);
    }

    #[test]
    fn golden_query_response_announce_more() {
        let q = ExchangeBody {
            topic: "q".into(),
            kind: BodyKind::Query,
            query_id: 5,
            records: vec![Bytes::from_static(b"x")],
            ..Default::default()
        };
        // records (12 01 78), topic (82 01 01 71), kind (88 01 01), query_id (90 01 05).
        assert_eq!(hex(&enc(&q)), "12017882010171880101900105");
        assert_eq!(ProtobufCodec.decode(Bytes::from(enc(&q))).unwrap(), q);
        let more = ExchangeBody {
            more: true,
            ..Default::default()
        };
        // Field 19, varint → key 0x98 0x01.
        assert_eq!(hex(&enc(&more)), "980101");
        assert_eq!(ProtobufCodec.decode(Bytes::from(enc(&more))).unwrap(), more);
        let unknown = ProtobufCodec
            .decode(Bytes::from_static(&[0x88, 0x01, 0x09]))
            .unwrap();
        assert_eq!(unknown.kind, BodyKind::Unknown(9));
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for bad in [&[0xffu8][..], &[0x0a, 0x10], &[0x12, 0x05, 0x00]] {
            assert!(matches!(
                ProtobufCodec.decode(Bytes::copy_from_slice(bad)),
                Err(CodecError::Decode(_))
            ));
        }
    }

    use alloc::format;
}
