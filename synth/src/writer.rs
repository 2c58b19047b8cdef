//! Parquet writers for the generated datasets, one thread each, fed through bounded channels
//! so that generation and encoding overlap without queuing unbounded work.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use tongban_policy::licence::LICENCE_TYPES;

use super::{
    HOUSEHOLD_FILE, HOUSING_FUND_FILE, SOCIAL_INSURANCE_FILE, SynthConfig, licence_file, licences, schema,
};
use crate::error::{Result, SynthError};

/// The key the people's datasets are sorted and looked up by.
const PERSON_KEY: &str = "id_number";
/// The key every licence register is sorted and looked up by.
const LICENCE_KEY: &str = "licence_number";

/// Low-cardinality code columns, the only ones dictionary-encoded. A dictionary page covers a
/// whole column chunk, and reading any page of a column means decoding it: for names or
/// addresses that is megabytes per key look-up.
const DICTIONARY_COLUMNS: &[&str] = &[
    "gender",
    "ethnicity",
    "relation_to_head",
    "division_code",
    "marital_status",
    "status",
    "insured_division_code",
    "insurance_type",
    "account_status",
    "loan_status",
    "issuer_credit_code",
    "issuer_name",
    "registration_authority",
    "entity_type",
];

/// Writer settings: sorted by key, with page-level statistics (the page index), a bloom
/// filter on the key, dictionaries only where they are small, and small pages, so that a key
/// look-up decodes about one small page per column.
fn properties(config: &SynthConfig, key: &str) -> WriterProperties {
    let key = ColumnPath::from(key);
    let mut builder = WriterProperties::builder().set_dictionary_enabled(false);
    for column in DICTIONARY_COLUMNS {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*column), true);
    }
    builder
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_max_row_group_row_count(Some(config.row_group_rows))
        .set_data_page_row_count_limit(config.page_rows)
        .set_write_batch_size(config.page_rows.min(1024))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_column_bloom_filter_enabled(key.clone(), true)
        .set_column_bloom_filter_fpp(key.clone(), 0.01)
        .set_column_bloom_filter_max_ndv(key, config.row_group_rows as u64)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .set_created_by("tongban generate".to_owned())
        .build()
}

struct DatasetWriter {
    sender: SyncSender<RecordBatch>,
    thread: JoinHandle<Result<()>>,
    partial: PathBuf,
    final_name: String,
}

impl DatasetWriter {
    fn start(
        out: &Path,
        final_name: String,
        key: &str,
        schema: SchemaRef,
        config: &SynthConfig,
    ) -> Result<Self> {
        let partial = out.join(format!("{final_name}.partial"));
        let file = File::create(&partial)?;
        let mut writer = ArrowWriter::try_new(file, schema, Some(properties(config, key)))?;
        // One batch in flight per dataset: enough to overlap generation and encoding on two
        // cores, and each queued batch is a whole county, so a deeper queue costs memory.
        let (sender, receiver) = sync_channel::<RecordBatch>(1);
        let thread = std::thread::Builder::new().name(format!("write-{final_name}")).spawn(move || {
            for batch in receiver {
                writer.write(&batch)?;
            }
            writer.close()?;
            Ok(())
        })?;
        Ok(DatasetWriter { sender, thread, partial, final_name })
    }

    fn send(&self, batch: RecordBatch) -> Result<()> {
        self.sender.send(batch).map_err(|_| SynthError::WriterStopped(self.final_name.clone()))
    }

    fn finish(self, out: &Path) -> Result<()> {
        drop(self.sender);
        self.thread.join().map_err(|_| SynthError::WriterStopped(self.final_name.clone()))??;
        fs::rename(&self.partial, out.join(&self.final_name))?;
        Ok(())
    }
}

pub(super) struct Writers {
    household: DatasetWriter,
    social_insurance: DatasetWriter,
    housing_fund: DatasetWriter,
    /// One register per licence type, in `LICENCE_TYPES` order.
    licences: Vec<DatasetWriter>,
}

impl Writers {
    pub(super) fn start(out: &Path, config: &SynthConfig) -> Result<Self> {
        let person =
            |name: &str, schema| DatasetWriter::start(out, name.to_owned(), PERSON_KEY, schema, config);
        Ok(Writers {
            household: person(HOUSEHOLD_FILE, schema::household())?,
            social_insurance: person(SOCIAL_INSURANCE_FILE, schema::social_insurance())?,
            housing_fund: person(HOUSING_FUND_FILE, schema::housing_fund())?,
            licences: LICENCE_TYPES
                .iter()
                .map(|t| DatasetWriter::start(out, licence_file(t), LICENCE_KEY, licences::schema(t), config))
                .collect::<Result<_>>()?,
        })
    }

    pub(super) fn send(
        &self,
        household: RecordBatch,
        social: RecordBatch,
        fund: RecordBatch,
        licences: Vec<RecordBatch>,
    ) -> Result<()> {
        self.household.send(household)?;
        self.social_insurance.send(social)?;
        self.housing_fund.send(fund)?;
        for (writer, batch) in self.licences.iter().zip(licences) {
            writer.send(batch)?;
        }
        Ok(())
    }

    pub(super) fn finish(self, out: &Path) -> Result<()> {
        self.household.finish(out)?;
        self.social_insurance.finish(out)?;
        self.housing_fund.finish(out)?;
        for writer in self.licences {
            writer.finish(out)?;
        }
        Ok(())
    }
}
