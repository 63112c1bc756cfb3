//! One error type for the library; every message is one line naming the thing and the fix.

use std::path::PathBuf;

/// Everything that can go wrong in `scllm-papers`.
#[derive(Debug, thiserror::Error)]
pub enum PapersError {
    #[error("{url}: HTTP {status} after {attempts} attempt(s); {hint}")]
    Http {
        url: String,
        status: u16,
        attempts: u32,
        hint: String,
    },
    #[error("{url}: rate limited (HTTP 429) after {attempts} attempt(s); wait a few minutes or raise --min-interval")]
    RateLimited { url: String, attempts: u32 },
    #[error("{url}: {host} answered with a Cloudflare challenge ({marker}); bioRxiv blocks scripted HTML access, so use the default Europe PMC search and api.biorxiv.org instead of --html-search")]
    Blocked {
        url: String,
        host: String,
        marker: String,
    },
    #[error("{url}: not found (HTTP 404); check the DOI or identifier")]
    NotFound { url: String },
    #[error("{url}: network error after {attempts} attempt(s): {message}; check the connection or point {setting} at a reachable server")]
    Network {
        url: String,
        attempts: u32,
        message: String,
        setting: String,
    },
    #[error("{what}: cannot parse response: {message}")]
    Decode { what: String, message: String },
    /// Valid JSON of the wrong shape: reported, never read as "0 results".
    #[error("{what}: unexpected response: {field} {problem}; check that {setting} points at the right server")]
    Schema {
        what: String,
        field: String,
        problem: String,
        setting: String,
    },
    #[error("{url}: response body exceeds {limit_mib} MiB once decompressed (limit MAX_BODY_BYTES); the server sent too much or a compression bomb; check {setting}")]
    TooLarge {
        url: String,
        limit_mib: u64,
        setting: String,
    },
    #[error("{url}: did not answer within {seconds} s (--deadline){detail}; the server is slow or stalled: raise --deadline or try again later")]
    Deadline {
        url: String,
        seconds: u64,
        detail: String,
    },
    #[error(
        "{doi}: not found on bioRxiv or medRxiv (api.biorxiv.org said \"{status}\"); check the DOI"
    )]
    UnknownDoi { doi: String, status: String },
    #[error("cache {path}: {source}; fix the permissions or pass --no-cache")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("graph store {store}: {message}")]
    Store { store: String, message: String },
    #[error("{0}")]
    InvalidInput(String),
}

pub type Result<T, E = PapersError> = std::result::Result<T, E>;

impl PapersError {
    pub fn store(store: impl Into<String>, message: impl std::fmt::Display) -> Self {
        PapersError::Store {
            store: store.into(),
            message: message.to_string(),
        }
    }
    /// Bad input rather than a failure of scllm: a bad argument or a server/file whose answer
    /// cannot be read. The CLI maps these to exit code 2.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            PapersError::InvalidInput(_)
                | PapersError::Decode { .. }
                | PapersError::Schema { .. }
                | PapersError::TooLarge { .. }
        )
    }
    pub fn decode(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        PapersError::Decode {
            what: what.into(),
            message: message.to_string(),
        }
    }
}

impl From<rusqlite::Error> for PapersError {
    fn from(e: rusqlite::Error) -> Self {
        PapersError::store("sqlite", e)
    }
}
