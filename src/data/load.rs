//! Loading one market-data file from a path or URL.
//!
//! - A path is read on every load; its modification time is the data's age.
//! - A URL is cached under the cache directory with its fetch time and re-fetched when older
//!   than the TTL. A failed or refused fetch keeps serving the cached copy and says why.
//! - New data must parse and must not have lost most of what the last good data had.

use crate::core::market::{DataError, PriceTable, Provenance, SpotAdvisor};
use backon::{ExponentialBuilder, Retryable};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A market-data document the loader can fetch, parse and compare.
pub trait MarketFile: Sized + Send + 'static {
    /// Short name used in cache file names and messages.
    const KIND: &'static str;
    fn parse(bytes: &[u8], file: &str) -> Result<Self, DataError>;
    fn check_replaces(&self, last_good: &Self, file: &str) -> Result<(), DataError>;
}

impl MarketFile for SpotAdvisor {
    const KIND: &'static str = "spot-advisor";
    fn parse(bytes: &[u8], file: &str) -> Result<Self, DataError> {
        SpotAdvisor::parse(bytes, file)
    }
    fn check_replaces(&self, last_good: &Self, file: &str) -> Result<(), DataError> {
        SpotAdvisor::check_replaces(self, last_good, file)
    }
}

impl MarketFile for PriceTable {
    const KIND: &'static str = "prices";
    fn parse(bytes: &[u8], file: &str) -> Result<Self, DataError> {
        PriceTable::parse(bytes, file)
    }
    fn check_replaces(&self, last_good: &Self, file: &str) -> Result<(), DataError> {
        PriceTable::check_replaces(self, last_good, file)
    }
}

/// A file path or an http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Url(String),
}

impl Source {
    pub fn parse(s: &str) -> Source {
        if s.starts_with("http://") || s.starts_with("https://") {
            Source::Url(s.to_string())
        } else {
            Source::File(PathBuf::from(s))
        }
    }
    pub fn location(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Url(u) => u.clone(),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location())
    }
}

/// Parsed data and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub data: T,
    pub provenance: Provenance,
}

#[derive(Serialize, Deserialize)]
struct CacheMeta {
    url: String,
    fetched_at: jiff::Timestamp,
}

/// Loads market data. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Loader {
    cache_dir: Option<PathBuf>,
    ttl: Duration,
    /// Built on the first URL fetch: loading the system's root certificates costs a few
    /// milliseconds that a run reading only local files should not pay.
    http: Arc<OnceLock<reqwest::Client>>,
}

/// `$XDG_CACHE_HOME/spotplan` (or the platform's cache directory).
pub fn default_cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("spotplan"))
}

fn io_err(file: &str, e: impl std::fmt::Display) -> DataError {
    DataError::Io {
        file: file.into(),
        message: e.to_string(),
    }
}

/// Gunzips when the bytes start with the gzip magic number.
pub fn maybe_gunzip(bytes: Vec<u8>, file: &str) -> Result<Vec<u8>, DataError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| io_err(file, format!("not a valid gzip file: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

impl Loader {
    pub fn new(cache_dir: Option<PathBuf>, ttl: Duration) -> Loader {
        Loader {
            cache_dir,
            ttl,
            http: Arc::default(),
        }
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            // reqwest is built without a default crypto provider; use ring, as kube does.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .user_agent(concat!("spotplan/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client with static settings")
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Loads `source`. `last_good` is the data currently in use, if any: new data that lost
    /// most of it is refused.
    pub async fn load<T: MarketFile>(
        &self,
        source: &Source,
        last_good: Option<&T>,
    ) -> Result<Loaded<T>, DataError> {
        match source {
            Source::File(path) => {
                // Parse on the blocking pool so an advisor file and a price file load in parallel.
                let p = path.clone();
                let loaded = tokio::task::spawn_blocking(move || load_file::<T>(&p))
                    .await
                    .map_err(|e| io_err(&path.display().to_string(), e))??;
                if let Some(old) = last_good {
                    loaded
                        .data
                        .check_replaces(old, &loaded.provenance.location)?;
                }
                Ok(loaded)
            }
            Source::Url(url) => self.load_url(url, last_good).await,
        }
    }

    fn cache_paths(&self, kind: &str, url: &str) -> Option<(PathBuf, PathBuf)> {
        let dir = self.cache_dir.as_ref()?;
        let digest = Sha256::digest(url.as_bytes());
        let key: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Some((
            dir.join(format!("{kind}-{key}.data")),
            dir.join(format!("{kind}-{key}.meta.json")),
        ))
    }

    fn read_cache<T: MarketFile>(&self, url: &str) -> Option<Loaded<T>> {
        let (data_path, meta_path) = self.cache_paths(T::KIND, url)?;
        let meta: CacheMeta = serde_json::from_slice(&std::fs::read(&meta_path).ok()?).ok()?;
        if meta.url != url {
            return None;
        }
        let name = data_path.display().to_string();
        let data = T::parse(&std::fs::read(&data_path).ok()?, &name).ok()?;
        Some(Loaded {
            data,
            provenance: Provenance {
                location: url.to_string(),
                as_of: meta.fetched_at,
                from_cache: true,
                refresh_error: None,
            },
        })
    }

    fn write_cache(
        &self,
        kind: &str,
        url: &str,
        bytes: &[u8],
        fetched_at: jiff::Timestamp,
    ) -> Result<(), DataError> {
        let Some((data_path, meta_path)) = self.cache_paths(kind, url) else {
            return Ok(());
        };
        let dir = data_path.parent().expect("cache files live in a directory");
        std::fs::create_dir_all(dir).map_err(|e| io_err(&dir.display().to_string(), e))?;
        let meta = serde_json::to_vec(&CacheMeta {
            url: url.to_string(),
            fetched_at,
        })
        .expect("cache metadata serializes");
        // Write both files beside their final names, then rename: a crash never leaves a
        // half-written cache entry behind.
        for (path, content) in [(&data_path, bytes), (&meta_path, &meta[..])] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, content).map_err(|e| io_err(&tmp.display().to_string(), e))?;
            std::fs::rename(&tmp, path).map_err(|e| io_err(&path.display().to_string(), e))?;
        }
        Ok(())
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, DataError> {
        let attempt = || async {
            let resp = self.http().get(url).send().await?;
            let resp = resp.error_for_status()?;
            Ok::<_, reqwest::Error>(resp.bytes().await?.to_vec())
        };
        let bytes = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_times(3),
            )
            .when(|e: &reqwest::Error| {
                // Retry what may pass: network trouble and server errors, not 4xx.
                e.status()
                    .is_none_or(|s| s.is_server_error() || s.as_u16() == 429)
            })
            .await
            .map_err(|e| io_err(url, format!("fetch failed: {}", error_chain(&e))))?;
        maybe_gunzip(bytes, url)
    }

    async fn load_url<T: MarketFile>(
        &self,
        url: &str,
        last_good: Option<&T>,
    ) -> Result<Loaded<T>, DataError> {
        let cached = self.read_cache::<T>(url);
        let now = jiff::Timestamp::now();
        if let Some(c) = &cached {
            let age = now.duration_since(c.provenance.as_of);
            if age.is_positive() && age.unsigned_abs() < self.ttl && last_good.is_none() {
                return Ok(cached.expect("checked above"));
            }
        }
        let fresh = async {
            let bytes = self.fetch(url).await?;
            let data = T::parse(&bytes, url)?;
            // Compare with what is in use, else with the cached copy.
            if let Some(old) = last_good.or(cached.as_ref().map(|c| &c.data)) {
                data.check_replaces(old, url)?;
            }
            self.write_cache(T::KIND, url, &bytes, now)?;
            Ok::<_, DataError>(data)
        }
        .await;
        match (fresh, cached) {
            (Ok(data), _) => Ok(Loaded {
                data,
                provenance: Provenance {
                    location: url.to_string(),
                    as_of: now,
                    from_cache: false,
                    refresh_error: None,
                },
            }),
            (Err(e), Some(mut c)) => {
                c.provenance.refresh_error = Some(e.to_string());
                Ok(c)
            }
            (Err(e), None) => Err(e),
        }
    }
}

fn load_file<T: MarketFile>(path: &Path) -> Result<Loaded<T>, DataError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| io_err(&name, e))?;
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| io_err(&name, e))?;
    let data = T::parse(&maybe_gunzip(bytes, &name)?, &name)?;
    Ok(Loaded {
        data,
        provenance: Provenance {
            as_of: jiff::Timestamp::try_from(modified).map_err(|e| io_err(&name, e))?,
            location: name,
            from_cache: false,
            refresh_error: None,
        },
    })
}

/// An error with its sources, on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = inner.source();
    }
    s
}
