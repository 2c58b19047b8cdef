//! Where a file-backed dataset lives: a local path or an object-store URL.

use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;
use url::Url;

use crate::error::{ConnectorError, Result};

/// A resolved file location: the URL DataFusion lists, and the store and path that the key
/// look-up reads directly.
#[derive(Debug, Clone)]
pub struct Location {
    pub url: Url,
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
}

impl Location {
    /// Resolves `location`, which is either a URL with a scheme (`file:///…`, or any scheme the
    /// build's object_store features support) or a file-system path, taken relative to
    /// `base_dir` when it is relative.
    pub fn resolve(location: &str, base_dir: &FsPath) -> Result<Self> {
        let bad = |reason: String| ConnectorError::BadLocation { location: location.to_owned(), reason };
        let url = match Url::parse(location) {
            // A one-letter scheme is a Windows drive letter, not a URL.
            Ok(url) if url.scheme().len() > 1 => url,
            _ => {
                let path = base_dir.join(location);
                let path =
                    std::fs::canonicalize(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
                // A directory is a collection of files, which DataFusion and the look-up path
                // recognise by the URL's trailing slash.
                let url =
                    if path.is_dir() { Url::from_directory_path(&path) } else { Url::from_file_path(&path) };
                url.map_err(|()| bad("not an absolute path".into()))?
            }
        };
        if matches!(url.scheme(), "s3" | "s3a") && !cfg!(feature = "s3") {
            return Err(bad("S3 locations need a build with the `s3` feature".into()));
        }
        // An object store's endpoint, region and credentials come from the `AWS_*` variables
        // that every S3 client reads (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
        // …), so that secrets stay out of the configuration file; no other variable is passed,
        // since the builder would read a bare `ENDPOINT` or `REGION` too.
        let options = std::env::vars().filter(|(key, _)| key.starts_with("AWS_"));
        let (store, path) = object_store::parse_url_opts(&url, options).map_err(|e| bad(e.to_string()))?;
        Ok(Location { url, store: Arc::from(store), path })
    }

    /// The `scheme://authority` part that DataFusion's object-store registry is keyed by.
    pub fn store_url(&self) -> Url {
        let mut url = self.url.clone();
        url.set_path("");
        url.set_query(None);
        url.set_fragment(None);
        url
    }
}
