//! Key look-up latency over the household dataset (10 million people by default), against
//! the same point query planned and run by DataFusion SQL on the same file in the same run.

#![allow(clippy::print_stdout)]

use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use datafusion::prelude::SessionContext;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::{Rng, SeedableRng};
use tongban_benches::{ensure_dataset, micros, percentiles, rows_from_env};
use tongban_connectors::{DatasetConfig, SourceConfig, open_dataset, session_config};
use tongban_synth::HOUSEHOLD_FILE;

const PROBES: usize = 2_000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = rows_from_env(10_000_000);
    let dir = ensure_dataset(rows);

    // Probe keys: existing identity numbers drawn at random from the whole file.
    let file = File::open(dir.join(HOUSEHOLD_FILE)).expect("household file");
    let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).expect("parquet");
    // The layout a look-up works against: pages per column in the first row group.
    let metadata = builder.metadata().clone();
    if let Some(offsets) = metadata.offset_index() {
        let pages: Vec<String> = metadata
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .zip(&offsets[0])
            .map(|(c, o)| format!("{}:{}", c.name(), o.page_locations().len()))
            .collect();
        println!(
            "layout rows={rows} row_groups={} rows_per_row_group={} pages_in_first_row_group=[{}]",
            metadata.num_row_groups(),
            metadata.row_group(0).num_rows(),
            pages.join(" ")
        );
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), [0]);
    let mut ids = Vec::with_capacity(rows as usize);
    for batch in builder.with_projection(mask).build().expect("reader") {
        let batch = batch.expect("batch");
        ids.extend(batch.column(0).as_string::<i32>().iter().flatten().map(str::to_owned));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let probes: Vec<String> = (0..PROBES).map(|_| ids[rng.random_range(0..ids.len())].clone()).collect();
    drop(ids);

    // One worker thread: the figures are per core.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let ctx = SessionContext::new_with_config(session_config().with_target_partitions(1));
        let config = DatasetConfig {
            name: "household".into(),
            key: "id_number".into(),
            supplier: None,
            source: SourceConfig::Parquet { location: HOUSEHOLD_FILE.into() },
        };
        let dataset = open_dataset(&config, &dir, &ctx).await.expect("open");
        ctx.register_table("household", Arc::clone(&dataset.table)).expect("register");

        // Warm the page cache and allocator the same way for both paths.
        for key in probes.iter().take(200) {
            dataset.lookup.lookup(key, None).await.expect("lookup");
        }

        let mut direct = Vec::with_capacity(PROBES);
        let mut scanned = 0u64;
        for key in &probes {
            let started = Instant::now();
            let outcome = dataset.lookup.lookup(key, None).await.expect("lookup");
            direct.push(started.elapsed());
            assert_eq!(outcome.batch.num_rows(), 1);
            scanned += outcome.stats.rows_scanned;
        }

        let mut sql = Vec::with_capacity(PROBES);
        for key in &probes {
            let started = Instant::now();
            let batches = ctx
                .sql(&format!("SELECT * FROM household WHERE id_number = '{key}'"))
                .await
                .expect("plan")
                .collect()
                .await
                .expect("run");
            sql.push(started.elapsed());
            assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        }

        let d = percentiles(&mut direct);
        let s = percentiles(&mut sql);
        let line = |name: &str, p: &tongban_benches::Percentiles| {
            println!(
                "lookup rows={rows} path={name} probes={PROBES} p50_us={:.0} p90_us={:.0} p99_us={:.0} max_us={:.0} mean_us={:.0}",
                micros(p.p50),
                micros(p.p90),
                micros(p.p99),
                micros(p.max),
                micros(p.mean)
            );
        };
        line("key_lookup", &d);
        line("datafusion_sql", &s);
        println!(
            "lookup rows={rows} rows_scanned_per_lookup={} sql_over_lookup_p50={:.1}x sql_over_lookup_p99={:.1}x",
            scanned / PROBES as u64,
            ratio(s.p50, d.p50),
            ratio(s.p99, d.p99)
        );
    });
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
