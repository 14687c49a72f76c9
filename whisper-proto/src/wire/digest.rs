//! G2 digest probe (`0x4732`, 12 bytes) and G2B bucket digest (`0x4742`).

use super::{DIGEST_LEN, magic, read_u16, read_u64};
use alloc::vec::Vec;
use bytes::{BufMut, Bytes};

/// G2: `flags u16` + `fingerprint u64`. Both a probe and its reply.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Digest {
    /// Bit 0 is [`Digest::FLAG_MATCH`]; bit 15 is whisper's [`Digest::FLAG_REPLY`];
    /// other bits are reserved and ignored on read.
    pub flags: u16,
    /// The sender's state fingerprint; 0 means "none".
    pub fingerprint: u64,
}

impl Digest {
    /// Set by a responder iff its fingerprint is non-zero and equals the probe's.
    pub const FLAG_MATCH: u16 = 0x0001;
    /// whisper's extension: set on replies, so that a reply is never answered. The Go
    /// reference ignores reserved bits, and carries probe and reply on a stream whose
    /// direction already tells them apart; on one shared connection this bit does.
    pub const FLAG_REPLY: u16 = 0x8000;

    /// True when the match flag is set.
    pub fn is_match(&self) -> bool {
        self.flags & Self::FLAG_MATCH != 0
    }

    /// True when the reply flag is set.
    pub fn is_reply(&self) -> bool {
        self.flags & Self::FLAG_REPLY != 0
    }

    /// A probe carrying the local fingerprint.
    pub fn probe(local_fp: u64) -> Self {
        Self {
            flags: 0,
            fingerprint: local_fp,
        }
    }

    /// A responder's reply to a probe carrying `peer_fp`, given the local fingerprint:
    /// [`Digest::FLAG_MATCH`] iff `local_fp` is non-zero and equal, and always
    /// [`Digest::FLAG_REPLY`].
    pub fn reply(local_fp: u64, peer_fp: u64) -> Self {
        let mut flags = Self::FLAG_REPLY;
        if local_fp != 0 && local_fp == peer_fp {
            flags |= Self::FLAG_MATCH;
        }
        Self {
            flags,
            fingerprint: local_fp,
        }
    }

    /// INVARIANT: `frame` is exactly [`DIGEST_LEN`] bytes.
    pub(super) fn parse(frame: &[u8]) -> Self {
        Self {
            flags: read_u16(frame, 2).unwrap_or_default(),
            fingerprint: read_u64(frame, 4).unwrap_or_default(),
        }
    }

    pub(super) fn emit<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(magic::DIGEST);
        buf.put_u16(self.flags);
        buf.put_u64(self.fingerprint);
    }
}

const _: () = assert!(DIGEST_LEN == 12);

/// G2B: `flags u16` + `count u8` (0 encodes 256) + count × `u64` bucket digests.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct BucketDigest {
    /// 0 on a request; a reply carries [`Digest::FLAG_REPLY`] (whisper's extension, as
    /// for G2). Readers tell request from reply by the connection role (the dialer
    /// initiates) and ignore the flags.
    pub flags: u16,
    /// 1..=256 bucket digests.
    pub digests: Vec<u64>,
}

impl BucketDigest {
    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        5 + 8 * self.digests.len()
    }

    /// INVARIANT: `frame` is a whole G2B frame (5 + 8 × count bytes).
    pub(super) fn parse(frame: &Bytes) -> Self {
        let count = count_from_byte(frame.get(4).copied().unwrap_or(1));
        let digests = (0..count)
            .map(|i| read_u64(frame, 5 + 8 * i).unwrap_or_default())
            .collect();
        Self {
            flags: read_u16(frame, 2).unwrap_or_default(),
            digests,
        }
    }

    pub(super) fn emit<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(magic::BUCKET_DIGEST);
        buf.put_u16(self.flags);
        // 256 encodes as 0.
        buf.put_u8(self.digests.len() as u8);
        for d in &self.digests {
            buf.put_u64(*d);
        }
    }
}

/// The bucket count a G2B count byte stands for (0 means 256).
pub(super) fn count_from_byte(b: u8) -> usize {
    if b == 0 { 256 } else { usize::from(b) }
}
