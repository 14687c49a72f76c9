//! The record format of [`MemStore`](crate::store::MemStore), carried as opaque
//! `records` in G1 bodies and as raw G3 payloads.
//!
//! ```text
//! version u8 (= 1) | flags u8 (bit 0 = tombstone; others 0) | hlc u64
//! | originLen u8 (1..=64) | origin[originLen]
//! | keyLen u16 (1..=1024) | key[keyLen]
//! | valueLen u32 | value[valueLen]        (valueLen = 0 for a tombstone)
//! ```
//!
//! All integers big-endian. `hlc` is the writer's hybrid logical clock: the upper 48 bits
//! are Unix milliseconds, the lower 16 a counter (see [`crate::store::Hlc`]). The version
//! of a record is `(hlc, origin)`, compared lexicographically; the greater wins (LWW).
//! The encoding is canonical: decoding rejects trailing bytes, unknown flags and a
//! tombstone with a value, so equal records always have equal bytes (the store's
//! fingerprint hashes these bytes).

use super::read_u16;
use super::read_u32;
use super::read_u64;
use crate::node::NodeId;
use bytes::{BufMut, Bytes, BytesMut};

/// The only record version this crate writes and reads.
pub const RECORD_VERSION: u8 = 1;
/// Longest record key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Flag bit: the record is a tombstone (a delete).
pub const FLAG_TOMBSTONE: u8 = 0x01;
/// Fixed part of the encoding: version, flags, hlc, originLen, keyLen, valueLen.
pub const RECORD_OVERHEAD: usize = 1 + 1 + 8 + 1 + 2 + 4;

/// One keyed, versioned value (or tombstone). Byte fields are zero-copy slices.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Record {
    /// The key, 1..=[`MAX_KEY_LEN`] bytes.
    pub key: Bytes,
    /// The value; `None` for a tombstone.
    pub value: Option<Bytes>,
    /// The writer's hybrid logical clock at the write.
    pub hlc: u64,
    /// The writer.
    pub origin: NodeId,
}

/// Why a record does not decode or encode. The record is dropped; nothing changes.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Shorter than its layout says.
    #[error("record truncated")]
    Truncated,
    /// A version this crate does not read.
    #[error("unknown record version {0}")]
    Version(u8),
    /// Reserved flag bits set.
    #[error("unknown record flags {0:#04x}")]
    Flags(u8),
    /// The origin is empty or longer than 64 bytes.
    #[error("bad record origin length")]
    Origin,
    /// The key is empty or longer than [`MAX_KEY_LEN`].
    #[error("bad record key length {0}")]
    KeyLength(usize),
    /// The value exceeds the store's cap.
    #[error("record value of {len} bytes exceeds {max}")]
    ValueTooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A tombstone carries a value.
    #[error("tombstone with a value")]
    TombstoneValue,
    /// Bytes after the value.
    #[error("trailing bytes after the record")]
    Trailing,
}

impl Record {
    /// The encoded size.
    pub fn encoded_len(&self) -> usize {
        RECORD_OVERHEAD
            + self.origin.as_bytes().len()
            + self.key.len()
            + self.value.as_ref().map_or(0, Bytes::len)
    }

    /// True for a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Result<Bytes, RecordError> {
        if self.key.is_empty() || self.key.len() > MAX_KEY_LEN {
            return Err(RecordError::KeyLength(self.key.len()));
        }
        let value = self.value.as_ref().map_or(&[][..], |v| v.as_ref());
        if value.len() > u32::MAX as usize {
            return Err(RecordError::ValueTooLarge {
                len: value.len(),
                max: u32::MAX as usize,
            });
        }
        let mut out = BytesMut::with_capacity(self.encoded_len());
        out.put_u8(RECORD_VERSION);
        out.put_u8(if self.value.is_none() {
            FLAG_TOMBSTONE
        } else {
            0
        });
        out.put_u64(self.hlc);
        let origin = self.origin.as_bytes();
        out.put_u8(origin.len() as u8);
        out.put_slice(origin);
        out.put_u16(self.key.len() as u16);
        out.put_slice(&self.key);
        out.put_u32(value.len() as u32);
        out.put_slice(value);
        Ok(out.freeze())
    }

    /// Decodes one record, zero-copy, rejecting values longer than `max_value`.
    pub fn decode(bytes: &Bytes, max_value: usize) -> Result<Self, RecordError> {
        let b = bytes.as_ref();
        let version = *b.first().ok_or(RecordError::Truncated)?;
        if version != RECORD_VERSION {
            return Err(RecordError::Version(version));
        }
        let flags = *b.get(1).ok_or(RecordError::Truncated)?;
        if flags & !FLAG_TOMBSTONE != 0 {
            return Err(RecordError::Flags(flags));
        }
        let hlc = read_u64(b, 2).ok_or(RecordError::Truncated)?;
        let origin_len = usize::from(*b.get(10).ok_or(RecordError::Truncated)?);
        let mut at = 11;
        if origin_len == 0 || origin_len > NodeId::MAX_LEN {
            return Err(RecordError::Origin);
        }
        if b.len() < at + origin_len {
            return Err(RecordError::Truncated);
        }
        let origin = NodeId::new(bytes.slice(at..at + origin_len)).ok_or(RecordError::Origin)?;
        at += origin_len;
        let key_len = usize::from(read_u16(b, at).ok_or(RecordError::Truncated)?);
        at += 2;
        if key_len == 0 || key_len > MAX_KEY_LEN {
            return Err(RecordError::KeyLength(key_len));
        }
        if b.len() < at + key_len {
            return Err(RecordError::Truncated);
        }
        let key = bytes.slice(at..at + key_len);
        at += key_len;
        let value_len = read_u32(b, at).ok_or(RecordError::Truncated)? as usize;
        at += 4;
        if value_len > max_value {
            return Err(RecordError::ValueTooLarge {
                len: value_len,
                max: max_value,
            });
        }
        let tombstone = flags & FLAG_TOMBSTONE != 0;
        if tombstone && value_len != 0 {
            return Err(RecordError::TombstoneValue);
        }
        if b.len() < at + value_len {
            return Err(RecordError::Truncated);
        }
        if b.len() > at + value_len {
            return Err(RecordError::Trailing);
        }
        let value = (!tombstone).then(|| bytes.slice(at..at + value_len));
        Ok(Self {
            key,
            value,
            hlc,
            origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(value: Option<&'static [u8]>) -> Record {
        Record {
            key: Bytes::from_static(b"k"),
            value: value.map(Bytes::from_static),
            hlc: 0x0102,
            origin: NodeId::from_static("n"),
        }
    }

    #[test]
    fn golden_value_and_tombstone() {
        let live = rec(Some(b"vv")).encode().unwrap();
        assert_eq!(
            live.as_ref(),
            &[
                1, 0, 0, 0, 0, 0, 0, 0, 1, 2, 1, b'n', 0, 1, b'k', 0, 0, 0, 2, b'v', b'v'
            ]
        );
        assert_eq!(Record::decode(&live, 16).unwrap(), rec(Some(b"vv")));
        let dead = rec(None).encode().unwrap();
        assert_eq!(
            dead.as_ref(),
            &[
                1, 1, 0, 0, 0, 0, 0, 0, 1, 2, 1, b'n', 0, 1, b'k', 0, 0, 0, 0
            ]
        );
        assert_eq!(Record::decode(&dead, 16).unwrap(), rec(None));
    }

    #[test]
    fn malformed_records_are_typed_errors() {
        let live = rec(Some(b"vv")).encode().unwrap();
        for cut in 0..live.len() {
            assert!(Record::decode(&live.slice(..cut), 16).is_err());
        }
        let mut trailing = live.to_vec();
        trailing.push(0);
        assert_eq!(
            Record::decode(&Bytes::from(trailing), 16),
            Err(RecordError::Trailing)
        );
        assert_eq!(
            Record::decode(&live, 1),
            Err(RecordError::ValueTooLarge { len: 2, max: 1 })
        );
        let mut bad = live.to_vec();
        bad[1] = 3;
        assert_eq!(
            Record::decode(&Bytes::from(bad), 16),
            Err(RecordError::Flags(3))
        );
        let mut tomb = live.to_vec();
        tomb[1] = 1;
        assert_eq!(
            Record::decode(&Bytes::from(tomb), 16),
            Err(RecordError::TombstoneValue)
        );
    }

    quickcheck::quickcheck! {
        fn decode_never_panics(bytes: alloc::vec::Vec<u8>) -> bool {
            let _ = Record::decode(&Bytes::from(bytes), 1024);
            true
        }
    }
}
