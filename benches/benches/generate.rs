//! Generation throughput and peak memory. Run once per size (`TONGBAN_BENCH_ROWS`) in its own
//! process, so peak memory belongs to that size alone: bounded memory shows as a peak that does
//! not grow with the row count.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use tongban_benches::{as_of, peak_rss_mib, rows_from_env};
use tongban_synth::{self as synth, SynthConfig};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = rows_from_env(1_000_000);
    let out = tempdir();
    let config = SynthConfig::new(rows, 2026, as_of());
    let started = Instant::now();
    let report = synth::generate(&config, &out, &|_| {}).expect("generate");
    let seconds = started.elapsed().as_secs_f64();
    let bytes: u64 =
        std::fs::read_dir(&out).expect("dir").filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();
    println!(
        "generate rows={rows} household={} social_insurance={} housing_fund={} seconds={seconds:.1} \
         people_per_s={:.0} all_rows_per_s={:.0} output_mib={:.0} peak_rss_mib={:.0}",
        report.household_rows,
        report.social_insurance_rows,
        report.housing_fund_rows,
        rows as f64 / seconds,
        (report.household_rows + report.social_insurance_rows + report.housing_fund_rows) as f64 / seconds,
        bytes as f64 / (1024.0 * 1024.0),
        peak_rss_mib().unwrap_or(f64::NAN),
    );
    // Keep the output for the look-up benchmark when it has none for this size yet.
    let keep = tongban_benches::data_dir().join(format!("synth-{rows}"));
    if synth::is_generated(&keep) || std::fs::rename(&out, &keep).is_err() {
        let _ = std::fs::remove_dir_all(&out);
    }
}

fn tempdir() -> std::path::PathBuf {
    let dir = tongban_benches::data_dir().join(format!("generate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create");
    dir
}
