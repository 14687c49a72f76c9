//! Whatever parses re-emits to bytes that parse to the same frame.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use whisper_proto::wire::{FrameDecoder, WireConfig};

fuzz_target!(|data: &[u8]| {
    let mut config = WireConfig::default();
    let _ = config.register_custom(0x5801, 4096);
    let mut dec = FrameDecoder::new();
    let mut input = Bytes::copy_from_slice(data);
    while let Ok(Some(frame)) = dec.decode_bytes(&config, &mut input) {
        let bytes = frame.to_bytes().expect("a parsed frame always encodes");
        assert_eq!(bytes.len(), frame.encoded_len());
        let again = whisper_proto::wire::Frame::parse(&bytes, &config).expect("re-parse");
        assert_eq!(again, frame);
    }
});
