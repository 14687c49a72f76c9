//! CPU gate (seed 000 `CPUGate`, reference §h), sans-IO.
//!
//! # Load
//! The engine cannot read a CPU meter, so it measures its own **tick skew**: each time
//! [`crate::Engine::handle_timeout`] fires a timer, the gate samples how late the call
//! came relative to the earliest deadline the engine had asked for. A call up to one
//! tick ([`CpuGateConfig::tick`], default 50 ms) late is normal (a fixed-tick adapter
//! rounds deadlines up to its tick); past that, the sample is
//! `clamp((lateness − tick) / tick, 0, 1)`. The tick load is the maximum over the last
//! [`CpuGateConfig::window`] samples (default 10; the ring starts at 0). The gate's load
//! is that, max-merged with an external reading the driver may set
//! ([`crate::Engine::set_external_load`], clamped to `[0, 1]`).
//!
//! # Decision
//! `allow()` is `load < threshold`, except that **threshold 0 disables the gate** (allow
//! everything), as the seed documents (the Go code denies everything at 0, reference
//! §t.21). Thresholds are clamped to `[0, 1]`; the default is 0.8.

use crate::time::{Duration, Instant};
use alloc::vec;
use alloc::vec::Vec;

/// Gate configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuGateConfig {
    /// Load at and above which work is refused; 0 disables the gate (default 0.8).
    pub threshold: f64,
    /// The adapter's tick: lateness up to one tick is free (default 50 ms).
    pub tick: Duration,
    /// Samples in the rolling window (default 10).
    pub window: usize,
}

impl Default for CpuGateConfig {
    fn default() -> Self {
        Self {
            threshold: 0.8,
            tick: Duration::from_millis(50),
            window: 10,
        }
    }
}

/// Load gate fed by tick lateness and an optional external reading.
#[derive(Clone, Debug)]
pub struct CpuGate {
    threshold: f64,
    tick: Duration,
    ring: Vec<f64>,
    idx: usize,
    external: f64,
}

impl Default for CpuGate {
    fn default() -> Self {
        Self::new(CpuGateConfig::default())
    }
}

fn clamp01(v: f64) -> f64 {
    if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) }
}

impl CpuGate {
    /// A gate. A zero tick takes 50 ms, a zero window 10.
    pub fn new(cfg: CpuGateConfig) -> Self {
        let tick = if cfg.tick.is_zero() {
            Duration::from_millis(50)
        } else {
            cfg.tick
        };
        let window = if cfg.window == 0 { 10 } else { cfg.window };
        Self {
            threshold: clamp01(cfg.threshold),
            tick,
            ring: vec![0.0; window],
            idx: 0,
            external: 0.0,
        }
    }

    /// Samples one `handle_timeout` call at `now` for a timer due at `deadline`.
    pub fn on_tick(&mut self, now: Instant, deadline: Instant) {
        let late = now.saturating_duration_since(deadline).as_micros() as f64;
        let tick = self.tick.as_micros() as f64;
        let sample = clamp01((late - tick) / tick);
        let n = self.ring.len();
        self.ring[self.idx % n] = sample;
        self.idx = (self.idx + 1) % n;
    }

    /// Sets the external reading (clamped to `[0, 1]`; NaN counts as 0).
    pub fn set_external(&mut self, load: f64) {
        self.external = clamp01(load);
    }

    /// The tick-skew load: the window's maximum.
    pub fn tick_load(&self) -> f64 {
        self.ring.iter().copied().fold(0.0, f64::max)
    }

    /// `max(tick load, external)`.
    pub fn load(&self) -> f64 {
        self.tick_load().max(self.external)
    }

    /// The threshold.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Sets the threshold (clamped to `[0, 1]`; 0 disables the gate).
    pub fn set_threshold(&mut self, t: f64) {
        self.threshold = clamp01(t);
    }

    /// True when work may proceed.
    pub fn allow(&self) -> bool {
        self.threshold == 0.0 || self.load() < self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn trips_on_late_ticks_and_recovers() {
        let mut g = CpuGate::default();
        // On time, or within one tick: no load.
        g.on_tick(ms(100), ms(100));
        g.on_tick(ms(250), ms(200));
        assert_eq!(g.load(), 0.0);
        assert!(g.allow());
        // 90 ms late = 40 ms past the free tick = 0.8 of a tick: load 0.8 ≥ threshold 0.8.
        g.on_tick(ms(390), ms(300));
        assert!((g.load() - 0.8) > -1e-9 && g.load() < 0.8 + 1e-9);
        assert!(!g.allow());
        // Nine on-time ticks keep it in the window; the tenth pushes it out.
        for i in 0..9 {
            g.on_tick(ms(1000 + i), ms(1000 + i));
            assert!(!g.allow(), "tick {i}");
        }
        g.on_tick(ms(2000), ms(2000));
        assert!(g.allow());
        // External reading is max-merged.
        g.set_external(0.9);
        assert!(!g.allow());
        g.set_external(f64::NAN);
        assert!(g.allow());
    }

    #[test]
    fn threshold_zero_disables_one_allows_below_one() {
        let mut g = CpuGate::new(CpuGateConfig {
            threshold: 0.0,
            ..Default::default()
        });
        g.set_external(1.0);
        assert!(g.allow());
        g.set_threshold(1.0);
        assert!(!g.allow());
        g.set_external(0.99);
        assert!(g.allow());
        g.set_threshold(7.0);
        assert_eq!(g.threshold(), 1.0);
    }
}
