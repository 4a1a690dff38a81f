//! Loading one market-data file from a path or a URL.
//!
//! - A path is read on every load; its modification time is the data's age.
//! - A URL is cached under the cache directory with its fetch time and re-fetched when older
//!   than the TTL. A failed or refused fetch keeps serving the cached copy and says why.
//! - New data must parse and must not have lost most of what the last good data had.
//! - A cache entry is one file, written to a unique temporary name and renamed into place, so
//!   concurrent runs never see half an entry; an entry that does not read back is ignored with
//!   a warning and fetched again.
//! - No fetch can hang: each attempt has a timeout and all attempts share one deadline.

use super::cache;
use backon::{ExponentialBuilder, Retryable};
use spotplan_core::market::{
    DataError, PriceTable, Provenance, RefreshError, SourceKind, SpotAdvisor, Stamp,
};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A market-data document the loader can fetch, parse and compare.
pub trait MarketFile: Sized + Send + 'static {
    const KIND: SourceKind;
    /// Parses `bytes`; `regions` limits what is kept (all when `None`).
    fn parse(bytes: &[u8], file: &str, regions: Option<&[&str]>) -> Result<Self, DataError>;
    fn check_replaces(&self, last_good: &Self, file: &str) -> Result<(), DataError>;
}

impl MarketFile for SpotAdvisor {
    const KIND: SourceKind = SourceKind::SpotAdvisor;
    fn parse(bytes: &[u8], file: &str, regions: Option<&[&str]>) -> Result<Self, DataError> {
        SpotAdvisor::parse_regions(bytes, file, regions)
    }
    fn check_replaces(&self, last_good: &Self, file: &str) -> Result<(), DataError> {
        SpotAdvisor::check_replaces(self, last_good, file)
    }
}

impl MarketFile for PriceTable {
    const KIND: SourceKind = SourceKind::PriceFile;
    fn parse(bytes: &[u8], file: &str, regions: Option<&[&str]>) -> Result<Self, DataError> {
        PriceTable::parse_regions(bytes, file, regions)
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
    pub fn is_url(&self) -> bool {
        matches!(self, Source::Url(_))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location())
    }
}

/// Parsed data, where it came from, and what went wrong on the way without stopping it.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub data: T,
    pub provenance: Provenance,
    /// Problems that did not stop the load (a corrupt cache entry, say).
    pub warnings: Vec<String>,
}

/// Loads market data. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Loader {
    cache_dir: Option<PathBuf>,
    ttl: Duration,
    /// All attempts of one fetch share this deadline.
    deadline: Duration,
    /// Built on the first URL fetch: loading the system's root certificates costs a few
    /// milliseconds that a run reading only local files should not pay.
    http: Arc<OnceLock<reqwest::Client>>,
}

/// `$XDG_CACHE_HOME/spotplan` (or the platform's cache directory).
pub fn default_cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("spotplan"))
}

/// Gunzips when the bytes start with the gzip magic number.
pub fn maybe_gunzip(bytes: Vec<u8>, file: &str) -> Result<Vec<u8>, DataError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::io(file, format!("not a valid gzip file: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// The default deadline of one fetch (all its attempts).
pub const DEFAULT_FETCH_DEADLINE: Duration = Duration::from_secs(60);

impl Loader {
    pub fn new(cache_dir: Option<PathBuf>, ttl: Duration) -> Loader {
        Loader {
            cache_dir,
            ttl,
            deadline: DEFAULT_FETCH_DEADLINE,
            http: Arc::default(),
        }
    }

    /// Sets the deadline of one fetch, all attempts included.
    pub fn with_deadline(mut self, deadline: Duration) -> Loader {
        self.deadline = deadline;
        self
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            crate::install_crypto_provider();
            reqwest::Client::builder()
                .user_agent(concat!("spotplan/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(5).min(self.deadline))
                // One attempt may take a third of the deadline: three fit.
                .timeout(self.deadline / 3)
                .build()
                .expect("HTTP client with static settings")
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Loads `source`, keeping `regions` (all when `None`). `last_good` is the data currently in
    /// use, if any: new data that lost most of it is refused.
    pub async fn load<T: MarketFile>(
        &self,
        source: &Source,
        regions: Option<&[&str]>,
        last_good: Option<&T>,
    ) -> Result<Loaded<T>, DataError> {
        match source {
            Source::File(path) => {
                // Parse on the blocking pool so an advisor file and a price file load in parallel.
                let p = path.clone();
                let keep: Option<Vec<String>> =
                    regions.map(|r| r.iter().map(|s| s.to_string()).collect());
                let loaded = tokio::task::spawn_blocking(move || {
                    let keep: Option<Vec<&str>> = keep
                        .as_ref()
                        .map(|v| v.iter().map(String::as_str).collect());
                    load_file::<T>(&p, keep.as_deref())
                })
                .await
                .map_err(|e| DataError::io(&path.display().to_string(), e))??;
                if let Some(old) = last_good {
                    loaded
                        .data
                        .check_replaces(old, &loaded.provenance.location)?;
                }
                Ok(loaded)
            }
            Source::Url(url) => self.load_url(url, regions, last_good).await,
        }
    }

    fn cache_path(&self, kind: SourceKind, url: &str) -> Option<PathBuf> {
        Some(cache::path(self.cache_dir.as_ref()?, kind.as_str(), url))
    }

    /// The cached copy of `url`, if there is a good one. A corrupt entry is reported in
    /// `warnings` and treated as absent.
    fn read_cache<T: MarketFile>(
        &self,
        url: &str,
        regions: Option<&[&str]>,
        warnings: &mut Vec<String>,
    ) -> Option<Loaded<T>> {
        let path = self.cache_path(T::KIND, url)?;
        let name = path.display().to_string();
        let parsed = cache::read(&path, url).and_then(|entry| {
            let Some((meta, body)) = entry else {
                return Ok(None);
            };
            let body = maybe_gunzip(body, &name).map_err(|e| e.to_string())?;
            let data = T::parse(&body, &name, regions).map_err(|e| e.to_string())?;
            Ok(Some((meta, data)))
        });
        match parsed {
            Ok(None) => None,
            Ok(Some((meta, data))) => Some(Loaded {
                data,
                provenance: Provenance {
                    kind: T::KIND,
                    region: None,
                    location: url.to_string(),
                    as_of: meta.fetched_at,
                    stamp: Stamp::Fetched,
                    published: meta.last_modified,
                    dated: Provenance::date_in_name(url),
                    from_cache: true,
                    refresh_error: None,
                },
                warnings: Vec::new(),
            }),
            Err(why) => {
                warnings.push(format!(
                    "ignoring the corrupt cache entry {name} ({why}); fetching again"
                ));
                None
            }
        }
    }

    fn write_cache(
        &self,
        kind: SourceKind,
        url: &str,
        bytes: &[u8],
        fetched_at: jiff::Timestamp,
        last_modified: Option<jiff::Timestamp>,
    ) -> Result<(), DataError> {
        let Some(path) = self.cache_path(kind, url) else {
            return Ok(());
        };
        let meta = cache::Meta {
            key: url.to_string(),
            fetched_at,
            last_modified,
        };
        cache::write(&path, &meta, bytes)
    }

    /// The body of `url` (gunzipped) and its `Last-Modified`, if the server said.
    async fn fetch(&self, url: &str) -> Result<(Vec<u8>, Option<jiff::Timestamp>), DataError> {
        let attempt = || async {
            let resp = self.http().get(url).send().await?;
            let resp = resp.error_for_status()?;
            let last_modified = resp
                .headers()
                .get(reqwest::header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| jiff::fmt::rfc2822::parse(v).ok())
                .map(|z| z.timestamp());
            Ok::<_, reqwest::Error>((resp.bytes().await?.to_vec(), last_modified))
        };
        let retried = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_jitter()
                    .with_max_times(2),
            )
            .when(|e: &reqwest::Error| {
                // Retry what may pass: network trouble and server errors, not 4xx.
                e.status()
                    .is_none_or(|s| s.is_server_error() || s.as_u16() == 429)
            });
        let (bytes, last_modified) = match tokio::time::timeout(self.deadline, retried).await {
            Ok(r) => {
                r.map_err(|e| DataError::io(url, format!("fetch failed: {}", error_chain(&e))))?
            }
            Err(_) => {
                return Err(DataError::io(
                    url,
                    format!(
                        "fetch failed: no complete answer within {}s",
                        self.deadline.as_secs()
                    ),
                ));
            }
        };
        Ok((maybe_gunzip(bytes, url)?, last_modified))
    }

    async fn load_url<T: MarketFile>(
        &self,
        url: &str,
        regions: Option<&[&str]>,
        last_good: Option<&T>,
    ) -> Result<Loaded<T>, DataError> {
        let mut warnings = Vec::new();
        let cached = self.read_cache::<T>(url, regions, &mut warnings);
        let now = jiff::Timestamp::now();
        if let Some(c) = &cached {
            let age = now.duration_since(c.provenance.as_of);
            if age.is_positive() && age.unsigned_abs() < self.ttl && last_good.is_none() {
                let mut c = cached.expect("checked above");
                c.warnings = warnings;
                return Ok(c);
            }
        }
        let mut published = None;
        let fresh = async {
            let (bytes, last_modified) = self.fetch(url).await?;
            published = last_modified;
            let data = T::parse(&bytes, url, regions)?;
            // Compare with what is in use, else with the cached copy.
            if let Some(old) = last_good.or(cached.as_ref().map(|c| &c.data)) {
                data.check_replaces(old, url)?;
            }
            if let Err(e) = self.write_cache(T::KIND, url, &bytes, now, published) {
                warnings.push(format!("could not cache {url}: {e}"));
            }
            Ok::<_, DataError>(data)
        }
        .await;
        match (fresh, cached) {
            (Ok(data), _) => Ok(Loaded {
                data,
                provenance: Provenance {
                    kind: T::KIND,
                    region: None,
                    location: url.to_string(),
                    as_of: now,
                    stamp: Stamp::Fetched,
                    published,
                    dated: Provenance::date_in_name(url),
                    from_cache: false,
                    refresh_error: None,
                },
                warnings,
            }),
            (Err(e), Some(mut c)) => {
                c.provenance.refresh_error = Some(RefreshError::from(&e));
                c.warnings = warnings;
                Ok(c)
            }
            (Err(e), None) => Err(e),
        }
    }
}

fn load_file<T: MarketFile>(path: &Path, regions: Option<&[&str]>) -> Result<Loaded<T>, DataError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| DataError::io(&name, e))?;
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| DataError::io(&name, e))?;
    let data = T::parse(&maybe_gunzip(bytes, &name)?, &name, regions)?;
    Ok(Loaded {
        data,
        provenance: Provenance {
            kind: T::KIND,
            region: None,
            as_of: jiff::Timestamp::try_from(modified).map_err(|e| DataError::io(&name, e))?,
            stamp: Stamp::FileModified,
            published: None,
            dated: Provenance::date_in_name(&name),
            location: name,
            from_cache: false,
            refresh_error: None,
        },
        warnings: Vec::new(),
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
