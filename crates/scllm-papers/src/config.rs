//! Where the client talks to and how politely. Base URLs come from flags or environment variables
//! so tests can point everything at a server on 127.0.0.1.

use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_EUROPEPMC_URL: &str = "https://www.ebi.ac.uk/europepmc/webservices/rest";
pub const DEFAULT_BIORXIV_API_URL: &str = "https://api.biorxiv.org";
pub const DEFAULT_BIORXIV_URL: &str = "https://www.biorxiv.org";
pub const ENV_EUROPEPMC_URL: &str = "SCLLM_EUROPEPMC_URL";
pub const ENV_BIORXIV_API_URL: &str = "SCLLM_BIORXIV_API_URL";
pub const ENV_BIORXIV_URL: &str = "SCLLM_BIORXIV_URL";
pub const ENV_CACHE_DIR: &str = "SCLLM_CACHE_DIR";
pub const ENV_MAILTO: &str = "SCLLM_MAILTO";

/// Client settings. `Default` reads nothing from the environment; use [`ClientConfig::from_env`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub europepmc_url: String,
    pub biorxiv_api_url: String,
    /// The bioRxiv web site (HTML search, `jatsxml` links).
    pub biorxiv_url: String,
    pub user_agent: String,
    /// `None` disables the on-disk cache.
    pub cache_dir: Option<PathBuf>,
    /// How long listing/search responses stay fresh in the cache; (DOI, version) content never expires.
    pub listing_ttl: Duration,
    /// Minimum spacing between two requests to the same API host.
    pub api_min_interval: Duration,
    /// Minimum spacing between two requests to the bioRxiv web site (Cloudflare starts limiting quickly).
    pub web_min_interval: Duration,
    /// Retries after the first attempt for 429, 5xx and network errors.
    pub max_retries: u32,
    /// First backoff delay; doubled on each retry.
    pub backoff_base: Duration,
    /// Upper bound on any single wait, including a server's `Retry-After` (tests set it low).
    pub max_wait: Duration,
    /// Per-request timeout (connect to last body byte).
    pub timeout: Duration,
    /// Wall-clock limit for everything this client does, from its creation (`--deadline`);
    /// `None` leaves only the per-request timeout and the retries.
    pub deadline: Option<Duration>,
    /// Show a spinner with the bytes received per request on stderr (a line per slow request
    /// when stderr is not a terminal). Off for library use.
    pub progress: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            europepmc_url: DEFAULT_EUROPEPMC_URL.into(),
            biorxiv_api_url: DEFAULT_BIORXIV_API_URL.into(),
            biorxiv_url: DEFAULT_BIORXIV_URL.into(),
            user_agent: user_agent(None),
            cache_dir: None,
            listing_ttl: Duration::from_secs(6 * 3600),
            api_min_interval: Duration::from_millis(1000),
            web_min_interval: Duration::from_millis(3000),
            max_retries: 4,
            backoff_base: Duration::from_secs(2),
            max_wait: Duration::from_secs(120),
            timeout: Duration::from_secs(60),
            deadline: None,
            progress: false,
        }
    }
}

/// A descriptive User-Agent, as the bioRxiv and Europe PMC guidance asks; `SCLLM_MAILTO` adds a contact.
pub fn user_agent(mailto: Option<&str>) -> String {
    let base = format!(
        "scllm-papers/{} (+https://github.com/scllm; literature client for single-cell research",
        env!("CARGO_PKG_VERSION")
    );
    match mailto {
        Some(m) if !m.is_empty() => format!("{base}; mailto:{m})"),
        _ => format!("{base})"),
    }
}

impl ClientConfig {
    /// Defaults overridden by `SCLLM_*` environment variables; the cache goes to
    /// `$SCLLM_CACHE_DIR`, else `$XDG_CACHE_HOME/scllm/papers`, else `~/.cache/scllm/papers`.
    pub fn from_env() -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut c = ClientConfig::default();
        if let Some(v) = env(ENV_EUROPEPMC_URL) {
            c.europepmc_url = v;
        }
        if let Some(v) = env(ENV_BIORXIV_API_URL) {
            c.biorxiv_api_url = v;
        }
        if let Some(v) = env(ENV_BIORXIV_URL) {
            c.biorxiv_url = v;
        }
        c.user_agent = user_agent(env(ENV_MAILTO).as_deref());
        c.cache_dir = env(ENV_CACHE_DIR).map(PathBuf::from).or_else(|| {
            env("XDG_CACHE_HOME")
                .map(|x| PathBuf::from(x).join("scllm/papers"))
                .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache/scllm/papers")))
        });
        c
    }

    /// Settings for tests against a loopback server: no spacing, millisecond backoff.
    pub fn for_tests(base: &str) -> Self {
        ClientConfig {
            europepmc_url: format!("{base}/europepmc"),
            biorxiv_api_url: format!("{base}/api"),
            biorxiv_url: format!("{base}/web"),
            api_min_interval: Duration::ZERO,
            web_min_interval: Duration::ZERO,
            backoff_base: Duration::from_millis(10),
            max_wait: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        }
    }

    pub(crate) fn trimmed(mut self) -> Self {
        for u in [
            &mut self.europepmc_url,
            &mut self.biorxiv_api_url,
            &mut self.biorxiv_url,
        ] {
            while u.ends_with('/') {
                u.pop();
            }
        }
        self
    }
}
