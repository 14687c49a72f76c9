//! Node and connection identities.

use bytes::Bytes;
use core::fmt;

/// A node's identity: an opaque byte string of 1..=64 bytes, ordered lexicographically.
///
/// The deployed Go mesh uses UTF-8 strings; any bytes are accepted. The hypercube's
/// positions come from the sorted order of these ids.
#[derive(Clone, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct NodeId(Bytes);

impl NodeId {
    /// The longest accepted id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// An id from bytes; `None` if empty or longer than [`NodeId::MAX_LEN`].
    pub fn new(bytes: impl Into<Bytes>) -> Option<Self> {
        let bytes = bytes.into();
        (!bytes.is_empty() && bytes.len() <= Self::MAX_LEN).then_some(Self(bytes))
    }

    /// An id from a static string.
    ///
    /// # Panics
    /// If `s` is empty or longer than [`NodeId::MAX_LEN`] bytes (a programming error in
    /// a literal, never peer input).
    pub fn from_static(s: &'static str) -> Self {
        match Self::new(Bytes::from_static(s.as_bytes())) {
            Some(id) => id,
            None => panic!("NodeId::from_static: length must be 1..=64 bytes"),
        }
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The id's bytes as a cheap clone of the shared buffer.
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(&self.0) {
            Ok(s) => f.write_str(s),
            Err(_) => {
                for b in self.0.iter() {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// A connection handle chosen by the driver; unique among the engine's live connections.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{format, vec};

    #[test]
    fn bounds_and_display() {
        assert!(NodeId::new(Bytes::new()).is_none());
        assert!(NodeId::new(vec![1u8; 65]).is_none());
        assert!(NodeId::new(vec![1u8; 64]).is_some());
        assert_eq!(format!("{}", NodeId::from_static("alice")), "alice");
        assert_eq!(format!("{}", NodeId::new(vec![0xffu8, 0]).unwrap()), "ff00");
        assert!(NodeId::from_static("a") < NodeId::from_static("b"));
    }
}
