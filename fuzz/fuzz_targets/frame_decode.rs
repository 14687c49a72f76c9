//! Raw bytes, in fuzzer-chosen chunks, through the incremental decoder: never panics,
//! never buffers past the largest cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whisper_proto::wire::{FrameDecoder, WireConfig, MIB};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let mut config = WireConfig::default();
    let _ = config.register_custom(0x5801, 4096);
    let step = usize::from(chunk).max(1);
    let mut dec = FrameDecoder::new();
    for mut part in rest.chunks(step) {
        loop {
            match dec.decode(&config, &mut part) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
            assert!(dec.buffered() <= MIB as usize + 16);
        }
    }
});
