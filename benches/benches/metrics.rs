//! What counting one data call costs: once, in `CallMetrics` (which both `/metrics` and the
//! OTLP export read), against the two metric families it replaced (a counter family by
//! operation, status and code, and a latency histogram family by operation; the OTLP meter
//! counted a third time when telemetry was on).
//!
//! `TONGBAN_BENCH_COUNTING=one|families` picks the way and `TONGBAN_BENCH_CALLS` the number of
//! calls. Run under `valgrind --tool=callgrind` at two numbers of calls: the difference of the
//! instruction counts over the difference of the calls is the exact cost of one call. Wall
//! time per call is printed too, for a run outside valgrind.

use std::hint::black_box;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tongban_gateway::metrics::{CallLabels, CallMetrics, OperationLabels};

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

#[allow(clippy::print_stdout)]
fn main() {
    let calls: usize =
        std::env::var("TONGBAN_BENCH_CALLS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let way = std::env::var("TONGBAN_BENCH_COUNTING").unwrap_or_else(|_| "one".into());
    // The label sets a gateway sees most: a few operations and outcomes, over and over.
    let labels = [
        CallLabels { operation: "verify", status: 200, code: None },
        CallLabels { operation: "lookup", status: 200, code: None },
        CallLabels { operation: "verify", status: 429, code: Some("rate_limited") },
        CallLabels { operation: "sql", status: 403, code: Some("access_denied") },
    ];
    let started = Instant::now();
    match way.as_str() {
        "families" => {
            let counts = Family::<CallLabels, Counter>::default();
            let seconds: Family<OperationLabels, Histogram, fn() -> Histogram> =
                Family::new_with_constructor(histogram);
            for n in 0..calls {
                let call = &labels[n % labels.len()];
                counts.get_or_create(black_box(call)).inc();
                seconds
                    .get_or_create(&OperationLabels { operation: call.operation })
                    .observe(black_box(0.000_4));
            }
            black_box(&counts);
        }
        _ => {
            let counts = CallMetrics::default();
            for n in 0..calls {
                counts.record(black_box(labels[n % labels.len()].clone()), black_box(0.000_4));
            }
            black_box(counts.calls());
        }
    }
    let elapsed = started.elapsed();
    println!("{way}: {calls} calls, {:.1} ns a call", elapsed.as_nanos() as f64 / calls.max(1) as f64);
}
