//! Masking whole columns, as a per-grant view does inside its scan: the identity numbers and
//! names of one county's people, read from the generated household file as DataFusion reads
//! them (string views), masked batch by batch. Reported as the time to mask the county's
//! whole column, and as values per second.

use std::hint::black_box;

use arrow::array::{ArrayRef, RecordBatch};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::prelude::SessionContext;
use tongban_benches::{ensure_dataset, rows_from_env};
use tongban_connectors::{DatasetConfig, SourceConfig, mask_array, open_dataset, session_config};
use tongban_policy::catalog::MaskRule;
use tongban_synth::HOUSEHOLD_FILE;

/// One county's people: the rows of the masked-output query of the SQL benchmark.
const COUNTY: &str = "411502";

fn county_batches() -> Vec<RecordBatch> {
    let dir = ensure_dataset(rows_from_env(1_000_000));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let config = DatasetConfig {
            name: "household".into(),
            key: "id_number".into(),
            supplier: None,
            source: SourceConfig::Parquet { location: HOUSEHOLD_FILE.into() },
        };
        let ctx = SessionContext::new_with_config(session_config().with_target_partitions(1));
        let dataset = open_dataset(&config, &dir, &ctx).await.expect("dataset");
        ctx.register_table("household", dataset.table).expect("register");
        ctx.sql(&format!("SELECT id_number, name FROM household WHERE division_code = '{COUNTY}'"))
            .await
            .expect("plan")
            .collect()
            .await
            .expect("rows")
    })
}

fn masks(c: &mut Criterion) {
    let batches = county_batches();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut group = c.benchmark_group("mask");
    group.throughput(Throughput::Elements(rows as u64));
    for (column, rule) in [(0, MaskRule::IdNumber), (1, MaskRule::Name)] {
        let arrays: Vec<ArrayRef> = batches.iter().map(|b| b.column(column).clone()).collect();
        group.bench_function(format!("{rule:?}/{rows} rows"), |b| {
            b.iter(|| {
                for array in &arrays {
                    black_box(mask_array(black_box(array), rule).expect("mask"));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, masks);
criterion_main!(benches);
