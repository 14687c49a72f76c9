//! Links the core without std; see Cargo.toml.
#![no_std]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};

struct NoAlloc;

// SAFETY: never hands out memory; only here so the staticlib has an allocator.
unsafe impl GlobalAlloc for NoAlloc {
    unsafe fn alloc(&self, _layout: Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOC: NoAlloc = NoAlloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// Touches the engine so it is really linked.
#[unsafe(no_mangle)]
pub extern "C" fn whisper_nostd_probe() -> usize {
    let config = whisper_proto::Config::default();
    config.max_connections
}
