//! Wire codec throughput: encode and decode of G3 rumors (64 B, 1 KiB, 64 KiB) and G2
//! probes, next to a memcpy of the same bytes measured in the same run.
//!
//! `cargo bench -p whisper-proto --bench wire` prints criterion's timings and, at the
//! end, a table of frames/s and the ratio of each codec path to memcpy.

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use std::hint::black_box;
use std::time::Instant as StdInstant;
use whisper_proto::wire::{Digest, FROM_DIM_ORIGIN, Frame, FrameDecoder, Rumor, WireConfig};

fn rumor(len: usize) -> Frame {
    Frame::Rumor(Rumor {
        hop: 1,
        from_dim: FROM_DIM_ORIGIN,
        payload: Bytes::from(vec![0xA5u8; len]),
    })
}

fn probe() -> Frame {
    Frame::Digest(Digest {
        flags: 1,
        fingerprint: 0xDEAD_BEEF_1234_5678,
    })
}

fn cases() -> Vec<(&'static str, Frame)> {
    vec![
        ("g2_probe", probe()),
        ("g3_64B", rumor(64)),
        ("g3_1KiB", rumor(1024)),
        ("g3_64KiB", rumor(64 * 1024)),
    ]
}

fn decode_one(dec: &mut FrameDecoder, config: &WireConfig, bytes: &Bytes) -> Frame {
    let mut input = bytes.clone();
    dec.decode_bytes(config, &mut input)
        .expect("valid frame")
        .expect("whole frame")
}

fn bench(c: &mut Criterion) {
    let config = WireConfig::default();
    let mut g = c.benchmark_group("wire");
    for (name, frame) in cases() {
        let bytes = frame.to_bytes().expect("valid");
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(BenchmarkId::new("encode", name), &frame, |b, f| {
            let mut buf = BytesMut::with_capacity(f.encoded_len());
            b.iter(|| {
                buf.clear();
                black_box(f).emit(&mut buf).expect("valid");
                black_box(&buf);
            })
        });
        g.bench_with_input(BenchmarkId::new("decode", name), &bytes, |b, bytes| {
            let mut dec = FrameDecoder::new();
            b.iter(|| black_box(decode_one(&mut dec, &config, black_box(bytes))))
        });
        g.bench_with_input(
            BenchmarkId::new("decode_chunked", name),
            &bytes,
            |b, bytes| {
                let mut dec = FrameDecoder::new();
                b.iter(|| {
                    let mut input: &[u8] = black_box(bytes);
                    black_box(dec.decode(&config, &mut input).expect("valid"))
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("memcpy", name), &bytes, |b, bytes| {
            let mut dst = vec![0u8; bytes.len()];
            b.iter(|| {
                dst.copy_from_slice(black_box(bytes));
                black_box(&dst);
            })
        });
    }
    g.finish();
}

/// Median nanoseconds per call of `f` over several timed batches.
fn median_ns(mut f: impl FnMut()) -> f64 {
    let mut iters = 1u64;
    loop {
        let t = StdInstant::now();
        for _ in 0..iters {
            f();
        }
        if t.elapsed().as_millis() >= 20 {
            break;
        }
        iters *= 2;
    }
    let mut samples: Vec<f64> = (0..15)
        .map(|_| {
            let t = StdInstant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Prints frames/s and the ratio to memcpy for each case, measured back to back.
fn ratio_table() {
    let config = WireConfig::default();
    println!("\nwire summary (medians of 15 batches, same process)");
    println!(
        "{:<10} {:>8} {:>11} {:>11} {:>11} {:>13} {:>10} {:>10}",
        "frame",
        "bytes",
        "encode ns",
        "decode ns",
        "memcpy ns",
        "decode fr/s",
        "enc/memcpy",
        "dec/memcpy"
    );
    for (name, frame) in cases() {
        let bytes = frame.to_bytes().expect("valid");
        let mut buf = BytesMut::with_capacity(frame.encoded_len());
        let enc = median_ns(|| {
            buf.clear();
            black_box(&frame).emit(&mut buf).expect("valid");
            black_box(&buf);
        });
        let mut dec = FrameDecoder::new();
        let decode = median_ns(|| {
            black_box(decode_one(&mut dec, &config, black_box(&bytes)));
        });
        let mut dst = vec![0u8; bytes.len()];
        let memcpy = median_ns(|| {
            dst.copy_from_slice(black_box(&bytes));
            black_box(&dst);
        });
        println!(
            "{:<10} {:>8} {:>11.1} {:>11.1} {:>11.1} {:>13.0} {:>9.0}% {:>9.0}%",
            name,
            bytes.len(),
            enc,
            decode,
            memcpy,
            1e9 / decode,
            100.0 * memcpy / enc,
            100.0 * memcpy / decode,
        );
    }
    println!("(enc/memcpy, dec/memcpy = codec throughput as a share of memcpy throughput)");
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratio_table();
}
