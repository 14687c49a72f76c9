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
//! **Topic extension.** The Go mesh cannot name a topic on the wire. whisper adds field
//! 16 (`topic`), written only when the exchange is for a topic other than the default
//! one. A single-topic deployment never writes it, so its bytes equal the reference's;
//! a Go peer skips field 16 as an unknown field.

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
pub trait G1Codec {
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
        };
        out.reserve(env.encoded_len());
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
            topic: String::new(),
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
        assert!(enc(&ExchangeBody::default()).is_empty());
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
