//! The protobuf G1 codec: any body decodes or errors; a decoded body re-encodes to bytes
//! that decode to the same value.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use whisper_proto::wire::codec::{G1Codec, ProtobufCodec};

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = ProtobufCodec.decode(Bytes::copy_from_slice(data)) {
        let mut out = BytesMut::new();
        ProtobufCodec.encode(&body, &mut out).expect("re-encode");
        let again = ProtobufCodec.decode(out.freeze()).expect("re-decode");
        assert_eq!(again, body);
    }
});
