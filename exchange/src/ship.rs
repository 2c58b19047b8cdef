//! Shipping the log to a shared object store, so that operators read every replica's records
//! as one log while each replica keeps writing its own.
//!
//! Each sealed segment and its Parquet copy are put at names fixed by the replica and the
//! segment number (`<prefix>/<replica>/segments/<number>.wal`, `…/parquet/<number>.parquet`),
//! so a put repeated after a crash or a timeout writes the same object again: shipping is
//! at least once, and idempotent. A segment counts as shipped only once both objects are read
//! back from the store at their local sizes; then a marker (`shipped/<number>`) is written
//! beside the log, and only a marked segment may be removed by retention.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::compact::{self, SHIPPED_DIR, is_shipped, parquet_path};
use crate::wal;

/// `[exchange_log.shipping]`: where the log is shipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingConfig {
    /// The shared store: `file:///path` (a local or NFS directory) or `s3://bucket/prefix` (any
    /// S3-compatible store; endpoint and credentials from the standard `AWS_*` variables).
    pub url: String,
    /// How often sealed segments are looked for, in seconds.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
}

fn default_interval() -> u64 {
    10
}

/// Why the shared store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("exchange_log.shipping.url {0:?}: {1}")]
    Url(String, String),
    #[error("the shared store: {0}")]
    Store(#[from] object_store::Error),
    #[error("the local log: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0} was not confirmed by the shared store: {1} bytes there, {2} here")]
    Unconfirmed(String, u64, u64),
}

/// The shared store of every replica's shipped log.
#[derive(Debug, Clone)]
pub struct SharedLog {
    store: Arc<dyn ObjectStore>,
    /// The store's URL without the prefix (`file:///`, `s3://bucket`), for DataFusion.
    base_url: String,
    prefix: ObjectPath,
}

/// A Parquet copy of one replica's segment in the shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCopy {
    pub replica: String,
    pub number: u64,
    /// Its URL, as DataFusion reads it.
    pub url: String,
}

impl SharedLog {
    /// The shared store `url` names.
    pub fn open(url: &str) -> Result<SharedLog, ShipError> {
        let parsed = url::Url::parse(url).map_err(|e| ShipError::Url(url.to_owned(), e.to_string()))?;
        let bad = |why: &str| ShipError::Url(url.to_owned(), why.to_owned());
        match parsed.scheme() {
            "file" => {
                let path = parsed.to_file_path().map_err(|()| bad("not a local path"))?;
                std::fs::create_dir_all(&path)?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&path)?;
                Ok(SharedLog {
                    store: Arc::new(store),
                    base_url: url::Url::from_directory_path(&path)
                        .map_err(|()| bad("not a directory"))?
                        .to_string(),
                    prefix: ObjectPath::default(),
                })
            }
            #[cfg(feature = "s3")]
            "s3" => {
                let bucket = parsed.host_str().ok_or_else(|| bad("no bucket"))?.to_owned();
                let store =
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&bucket).build()?;
                Ok(SharedLog {
                    store: Arc::new(store),
                    base_url: format!("s3://{bucket}/"),
                    prefix: ObjectPath::from(parsed.path().trim_matches('/')),
                })
            }
            other => Err(bad(&format!("{other}: is not a store this build ships to (file, s3)"))),
        }
    }

    /// The object store, for DataFusion to read from.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The store's URL without the prefix, under which [`SharedLog::store`] is registered.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn object(&self, replica: &str, kind: &str, name: &str) -> ObjectPath {
        let mut path = self.prefix.clone();
        for part in [replica, kind, name] {
            path = path.clone().join(part);
        }
        path
    }

    /// Ships every sealed segment of the log in `dir` (and its Parquet copy) not yet confirmed,
    /// as `replica`'s; answers the numbers confirmed by this pass.
    pub async fn ship(&self, dir: &Path, replica: &str) -> Result<Vec<u64>, ShipError> {
        let mut confirmed = Vec::new();
        let segments = {
            let dir = dir.to_owned();
            tokio::task::spawn_blocking(move || wal::list_segments(&dir))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))??
        };
        std::fs::create_dir_all(dir.join(SHIPPED_DIR))?;
        for (number, path) in segments {
            if is_shipped(dir, number) {
                continue;
            }
            // Only a sealed segment with its Parquet copy is shipped: the active one is still
            // being written, and a copy not yet made is made by the next compaction.
            let copy = parquet_path(dir, number);
            if compact::seal_of(&path)?.is_none() || !copy.exists() {
                continue;
            }
            let segment_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let copy_name = format!("{number:012}.parquet");
            for (local, remote) in [
                (path.clone(), self.object(replica, "segments", &segment_name)),
                (copy, self.object(replica, "parquet", &copy_name)),
            ] {
                self.put_confirmed(&local, &remote).await?;
            }
            let marker = dir.join(SHIPPED_DIR).join(number.to_string());
            std::fs::write(&marker, b"")?;
            confirmed.push(number);
        }
        if !confirmed.is_empty() {
            std::fs::File::open(dir.join(SHIPPED_DIR))?.sync_all()?;
        }
        Ok(confirmed)
    }

    async fn put_confirmed(&self, local: &PathBuf, remote: &ObjectPath) -> Result<(), ShipError> {
        let bytes = tokio::fs::read(local).await?;
        let size = bytes.len() as u64;
        self.store.put(remote, PutPayload::from(bytes)).await?;
        let there = self.store.head(remote).await?.size;
        if there != size {
            return Err(ShipError::Unconfirmed(remote.to_string(), there, size));
        }
        Ok(())
    }

    /// The Parquet copies of every replica in the shared store.
    pub async fn copies(&self) -> Result<Vec<SharedCopy>, ShipError> {
        use futures::TryStreamExt;
        let listed: Vec<object_store::ObjectMeta> = self.store.list(Some(&self.prefix)).try_collect().await?;
        let mut copies = Vec::new();
        for meta in listed {
            let parts: Vec<String> = meta.location.parts().map(|p| p.as_ref().to_owned()).collect();
            let [.., replica, kind, name] = parts.as_slice() else { continue };
            if kind != "parquet" {
                continue;
            }
            let Some(number) = name.strip_suffix(".parquet").and_then(|n| n.parse().ok()) else { continue };
            copies.push(SharedCopy {
                replica: replica.clone(),
                number,
                url: format!("{}{}", self.base_url, meta.location),
            });
        }
        copies.sort_by(|a, b| (&a.replica, a.number).cmp(&(&b.replica, b.number)));
        Ok(copies)
    }

    /// The replicas whose logs the shared store holds.
    pub async fn replicas(&self) -> Result<Vec<String>, ShipError> {
        let listed = self.store.list_with_delimiter(Some(&self.prefix)).await?;
        let mut replicas: Vec<String> =
            listed.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_owned)).collect();
        replicas.sort();
        Ok(replicas)
    }

    /// Copies `replica`'s shipped segments into `out` (made if needed), so that the audit
    /// walks them as it walks a log directory: the whole chain since the log began, segments
    /// removed locally by retention included. Answers how many were copied.
    pub async fn fetch(&self, replica: &str, out: &Path) -> Result<usize, ShipError> {
        use futures::TryStreamExt;
        std::fs::create_dir_all(out)?;
        let prefix = self.prefix.clone().join(replica).join("segments");
        let listed: Vec<object_store::ObjectMeta> = self.store.list(Some(&prefix)).try_collect().await?;
        for meta in &listed {
            let Some(name) = meta.location.filename() else { continue };
            let bytes = self.store.get(&meta.location).await?.bytes().await?;
            let partial = out.join(format!("{name}.partial"));
            std::fs::write(&partial, &bytes)?;
            std::fs::rename(&partial, out.join(name))?;
        }
        Ok(listed.len())
    }
}
