//! Shared pieces of Tongban's benchmarks: where benchmark data lives, generating it once, and
//! summarising latencies; and, in [`load`], what the benchmarks that run servers share.

#![allow(clippy::print_stdout)]

pub mod load;

use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;
use tongban_synth::{self as synth, SynthConfig};

/// The day benchmark datasets describe, fixed so that runs are comparable.
pub fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, 30).expect("date")
}

/// Benchmark data is kept beside the build cache: `$TONGBAN_BENCH_DATA`, else
/// `$CARGO_TARGET_DIR/bench-data`, else `target/bench-data`.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TONGBAN_BENCH_DATA") {
        return PathBuf::from(dir);
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    target.join("bench-data")
}

/// A generated dataset of `rows` people (seed 2026), generated on first use.
pub fn ensure_dataset(rows: u64) -> PathBuf {
    let dir = data_dir().join(format!("synth-{rows}"));
    if !synth::is_generated(&dir) {
        println!("generating {rows} people into {} (once)", dir.display());
        synth::generate(&SynthConfig::new(rows, 2026, as_of()), &dir, &|_| {}).expect("generate");
    }
    dir
}

/// Rows for a benchmark: `$TONGBAN_BENCH_ROWS`, else `default`.
pub fn rows_from_env(default: u64) -> u64 {
    std::env::var("TONGBAN_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Latency percentiles of a set of samples.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

pub fn percentiles(samples: &mut [Duration]) -> Percentiles {
    assert!(!samples.is_empty());
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    let total: Duration = samples.iter().sum();
    Percentiles {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: samples[samples.len() - 1],
        mean: total / samples.len() as u32,
    }
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Peak resident memory of this process so far, in MiB (Linux only).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
