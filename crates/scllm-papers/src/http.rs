//! Polite blocking HTTP: per-host spacing, retries with exponential backoff that honour
//! `Retry-After`, Cloudflare challenge detection, timeouts, and an on-disk cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::ClientConfig;
use crate::error::{PapersError, Result};

/// How a response may be cached.
#[derive(Debug, Clone)]
pub enum CachePolicy {
    /// Always ask the server.
    NoCache,
    /// Search pages and listings: fresh for `ClientConfig::listing_ttl`.
    Listing,
    /// Content of one (DOI, version): never changes, so it never expires.
    Immutable {
        doi: String,
        version: u32,
        kind: &'static str,
    },
}

/// A successful response body.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub url: String,
    pub status: u16,
    pub body: String,
    pub from_cache: bool,
}

#[derive(Default)]
struct HostState {
    last: Option<Instant>,
    not_before: Option<Instant>,
}

/// The HTTP client shared by every source; holds no per-search state.
pub struct HttpClient {
    agent: ureq::Agent,
    config: ClientConfig,
    hosts: Mutex<HashMap<String, HostState>>,
    requests_sent: AtomicU64,
}

impl HttpClient {
    pub fn new(config: ClientConfig) -> Self {
        let config = config.trimmed();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(config.user_agent.as_str())
            .timeout_global(Some(config.timeout))
            .max_redirects(5)
            .build()
            .into();
        HttpClient {
            agent,
            config,
            hosts: Mutex::new(HashMap::new()),
            requests_sent: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Requests that actually went to a server (cache hits excluded).
    pub fn requests_sent(&self) -> u64 {
        self.requests_sent.load(Ordering::Relaxed)
    }

    /// GET `url`, going through the cache according to `policy`. `setting` names the flag or
    /// environment variable that chose this server, for error messages.
    pub fn get(
        &self,
        url: &str,
        accept: &str,
        policy: &CachePolicy,
        setting: &str,
    ) -> Result<Fetched> {
        let cache_path = self.cache_path(url, policy);
        if let Some(path) = &cache_path {
            if let Some(body) = self.read_cache(path, policy) {
                return Ok(Fetched {
                    url: url.to_string(),
                    status: 200,
                    body,
                    from_cache: true,
                });
            }
        }
        let fetched = self.get_uncached(url, accept, setting)?;
        if let Some(path) = &cache_path {
            write_cache(path, &fetched.body)?;
        }
        Ok(fetched)
    }

    fn get_uncached(&self, url: &str, accept: &str, setting: &str) -> Result<Fetched> {
        let host = host_of(url);
        let attempts_allowed = self.config.max_retries + 1;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let more = attempt < attempts_allowed;
            self.wait_for_slot(&host, url);
            self.requests_sent.fetch_add(1, Ordering::Relaxed);
            let result = self.agent.get(url).header("Accept", accept).call();
            let mut response = match result {
                Ok(r) => r,
                Err(e) => {
                    if more {
                        self.sleep_backoff(attempt);
                        continue;
                    }
                    return Err(PapersError::Network {
                        url: url.to_string(),
                        attempts: attempt,
                        message: e.to_string(),
                        setting: setting.to_string(),
                    });
                }
            };
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v));
            let cf_mitigated = header("cf-mitigated");
            let body = match response
                .body_mut()
                .with_config()
                .limit(64 * 1024 * 1024)
                .read_to_string()
            {
                Ok(b) => b,
                Err(e) => {
                    if more {
                        self.sleep_backoff(attempt);
                        continue;
                    }
                    return Err(PapersError::Network {
                        url: url.to_string(),
                        attempts: attempt,
                        message: format!("reading the body: {e}"),
                        setting: setting.to_string(),
                    });
                }
            };
            if let Some(marker) = challenge_marker(status, cf_mitigated.as_deref(), &body) {
                // A challenge is not transient: retrying only digs the hole deeper.
                return Err(PapersError::Blocked {
                    url: url.to_string(),
                    host,
                    marker,
                });
            }
            match status {
                200..=299 => {
                    return Ok(Fetched {
                        url: url.to_string(),
                        status,
                        body,
                        from_cache: false,
                    })
                }
                404 | 410 => {
                    return Err(PapersError::NotFound {
                        url: url.to_string(),
                    })
                }
                429 => {
                    if !more {
                        return Err(PapersError::RateLimited {
                            url: url.to_string(),
                            attempts: attempt,
                        });
                    }
                    let wait = retry_after
                        .unwrap_or_else(|| self.backoff(attempt))
                        .min(self.config.max_wait);
                    self.cool_down(&host, wait);
                }
                500..=599 => {
                    if !more {
                        return Err(PapersError::Http {
                            url: url.to_string(),
                            status,
                            attempts: attempt,
                            hint: "the server keeps failing; try again later".into(),
                        });
                    }
                    match retry_after {
                        Some(w) => self.cool_down(&host, w.min(self.config.max_wait)),
                        None => self.sleep_backoff(attempt),
                    }
                }
                _ => {
                    let hint = match status {
                        400 => "the server rejected the request; check the query or identifier",
                        401 | 403 => "access denied; this source may block scripted access",
                        _ => "unexpected status",
                    };
                    return Err(PapersError::Http {
                        url: url.to_string(),
                        status,
                        attempts: attempt,
                        hint: hint.into(),
                    });
                }
            }
        }
    }

    fn min_interval(&self, url: &str) -> Duration {
        if url.starts_with(&self.config.biorxiv_url) {
            self.config.web_min_interval
        } else {
            self.config.api_min_interval
        }
    }

    /// Blocks until this host may be asked again, then records the request time.
    fn wait_for_slot(&self, host: &str, url: &str) {
        let interval = self.min_interval(url);
        loop {
            let wait = {
                let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
                let state = hosts.entry(host.to_string()).or_default();
                let now = Instant::now();
                let mut ready = now;
                if let Some(last) = state.last {
                    ready = ready.max(last + interval);
                }
                if let Some(nb) = state.not_before {
                    ready = ready.max(nb);
                }
                if ready <= now {
                    state.last = Some(now);
                    None
                } else {
                    Some(ready - now)
                }
            };
            match wait {
                None => return,
                Some(d) => std::thread::sleep(d),
            }
        }
    }

    /// After a 429 or 503 every request to the host waits, not only the retry.
    fn cool_down(&self, host: &str, wait: Duration) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let state = hosts.entry(host.to_string()).or_default();
        state.not_before = Some(Instant::now() + wait);
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << (attempt.saturating_sub(1)).min(16);
        let base = self.config.backoff_base.saturating_mul(factor);
        // Up to 25% jitter so parallel clients do not retry in lockstep.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = base.mul_f64(f64::from(nanos % 1000) / 4000.0);
        (base + jitter).min(self.config.max_wait)
    }

    fn sleep_backoff(&self, attempt: u32) {
        std::thread::sleep(self.backoff(attempt));
    }

    fn cache_path(&self, url: &str, policy: &CachePolicy) -> Option<PathBuf> {
        let dir = self.config.cache_dir.as_ref()?;
        match policy {
            CachePolicy::NoCache => None,
            CachePolicy::Listing => Some(dir.join("listing").join(format!("{:016x}", fnv1a(url)))),
            CachePolicy::Immutable { doi, version, kind } => Some(
                dir.join("content")
                    .join(sanitize_file_name(doi))
                    .join(format!("v{version}.{kind}")),
            ),
        }
    }

    fn read_cache(&self, path: &PathBuf, policy: &CachePolicy) -> Option<String> {
        let meta = std::fs::metadata(path).ok()?;
        if let CachePolicy::Listing = policy {
            let age = meta.modified().ok()?.elapsed().unwrap_or(Duration::MAX);
            if age > self.config.listing_ttl {
                return None;
            }
        }
        std::fs::read_to_string(path).ok()
    }
}

fn write_cache(path: &Path, body: &str) -> Result<()> {
    let err = |source| PapersError::Cache {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    // Atomic so a crash never leaves a truncated entry behind.
    scllm_fs::write_atomic(path, body.as_bytes()).map_err(err)
}

/// `scheme://host:port` part of a URL, the unit of rate limiting.
pub fn host_of(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    rest.split(['/', '?', '#']).next().unwrap_or("").to_string()
}

/// Percent-encodes a query or path component (RFC 3986 unreserved characters pass).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn sanitize_file_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// FNV-1a: stable across Rust versions, unlike `DefaultHasher`, so cache names survive upgrades.
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// What identifies a Cloudflare challenge or block page, if this is one.
pub fn challenge_marker(status: u16, cf_mitigated: Option<&str>, body: &str) -> Option<String> {
    if cf_mitigated.is_some_and(|v| v.eq_ignore_ascii_case("challenge")) {
        return Some(format!("HTTP {status}, cf-mitigated: challenge"));
    }
    let head: String = body.chars().take(20_000).collect();
    let markers = [
        ("error code: 1015", "Cloudflare rate-limit error 1015"),
        ("Just a moment...", "\"Just a moment...\" page"),
        ("cf-chl", "cf-chl challenge script"),
        ("challenge-platform", "challenge-platform script"),
        (
            "Attention Required! | Cloudflare",
            "\"Attention Required\" block page",
        ),
    ];
    for (needle, what) in markers {
        if head.contains(needle) {
            return Some(format!("HTTP {status}, {what}"));
        }
    }
    None
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let target = parse_http_date(v)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(target.saturating_sub(now)))
}

/// IMF-fixdate, e.g. `Wed, 21 Oct 2015 07:28:00 GMT`, to Unix seconds.
fn parse_http_date(v: &str) -> Option<u64> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| *m == parts[2])? as u64 + 1;
    let year: u64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), for years after 1970.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146097 + doe).checked_sub(719468)?;
    Some(days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1445412480)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn challenge_pages_are_recognised_and_json_is_not() {
        assert!(challenge_marker(403, None, "<title>Just a moment...</title>").is_some());
        assert!(challenge_marker(429, None, "error code: 1015").is_some());
        assert!(challenge_marker(200, Some("challenge"), "").is_some());
        assert!(challenge_marker(200, None, r#"{"messages":[]}"#).is_none());
    }

    #[test]
    fn hosts_and_components() {
        assert_eq!(host_of("http://127.0.0.1:8080/api/x?y"), "127.0.0.1:8080");
        assert_eq!(encode_component("a b/c:1"), "a%20b%2Fc%3A1");
    }
}
