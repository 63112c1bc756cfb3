//! Polite blocking HTTP: per-host spacing, retries with exponential backoff that honour
//! `Retry-After`, Cloudflare challenge detection, timeouts, and an on-disk cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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

/// Most bytes one response body may have once decompressed. Europe PMC's largest search page
/// (1000 core records) and long JATS full texts stay far below it; a gzip bomb (a few hundred
/// KiB inflating to gigabytes) is stopped here instead of filling memory. ureq's own `limit`
/// counts the bytes on the wire, before `Content-Encoding: gzip` is undone, so it is not enough.
pub const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// When stderr is not a terminal (no spinner), a response still arriving after this long gets a
/// line on stderr, repeated at this interval.
const SLOW_NOTICE: Duration = Duration::from_secs(5);

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
    /// `ClientConfig::deadline` counts from here.
    started: Instant,
    progress: MultiProgress,
}

enum BodyError {
    TooLarge,
    Io(std::io::Error),
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
        // indicatif hides a stderr target by itself when stderr is not a terminal.
        let progress = if config.progress {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        HttpClient {
            agent,
            config,
            hosts: Mutex::new(HashMap::new()),
            requests_sent: AtomicU64::new(0),
            started: Instant::now(),
            progress,
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Where per-request spinners are drawn; add other bars here so they do not overwrite them.
    pub fn progress(&self) -> &MultiProgress {
        &self.progress
    }

    /// Requests that actually went to a server (cache hits excluded).
    pub fn requests_sent(&self) -> u64 {
        self.requests_sent.load(Ordering::Relaxed)
    }

    /// Time left before `ClientConfig::deadline`; `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.config
            .deadline
            .map(|d| d.saturating_sub(self.started.elapsed()))
    }

    fn deadline_error(&self, url: &str, detail: String) -> PapersError {
        PapersError::Deadline {
            url: url.to_string(),
            seconds: self
                .config
                .deadline
                .unwrap_or_default()
                .as_secs_f64()
                .ceil() as u64,
            detail,
        }
    }

    /// Whether the deadline has (all but) passed; ureq's timer starts a little after ours.
    fn deadline_passed(&self) -> bool {
        self.remaining()
            .is_some_and(|r| r <= Duration::from_millis(50))
    }

    /// Sleeps, unless the sleep would outlast the deadline: then that is the error, with
    /// `last` (what went wrong before, if anything) in it.
    fn pause(&self, d: Duration, url: &str, why: &str, last: &str) -> Result<()> {
        if let Some(left) = self.remaining() {
            if d >= left {
                let last = if last.is_empty() {
                    String::new()
                } else {
                    format!("{last}; ")
                };
                return Err(self.deadline_error(
                    url,
                    format!(
                        " ({last}the next try would have to wait {:.1} s {why})",
                        d.as_secs_f64()
                    ),
                ));
            }
        }
        std::thread::sleep(d);
        Ok(())
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
        let mut last_failure = String::new();
        loop {
            attempt += 1;
            let more = attempt < attempts_allowed;
            self.wait_for_slot(&host, url, &last_failure)?;
            let mut timeout = self.config.timeout;
            if let Some(left) = self.remaining() {
                if left.is_zero() {
                    let detail = if last_failure.is_empty() {
                        String::new()
                    } else {
                        format!(" ({last_failure})")
                    };
                    return Err(self.deadline_error(url, detail));
                }
                timeout = timeout.min(left);
            }
            self.requests_sent.fetch_add(1, Ordering::Relaxed);
            let bar = self.request_bar(url);
            let result = self
                .agent
                .get(url)
                .header("Accept", accept)
                .config()
                .timeout_global(Some(timeout))
                .build()
                .call();
            let mut response = match result {
                Ok(r) => r,
                Err(e) => {
                    bar.finish_and_clear();
                    if self.deadline_passed() {
                        return Err(self.deadline_error(url, format!(" ({e})")));
                    }
                    if more {
                        last_failure = format!("last attempt: {e}");
                        self.sleep_backoff(attempt, url, &last_failure)?;
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
            let body = self.read_body(response.body_mut(), url, &bar);
            bar.finish_and_clear();
            let body = match body {
                Ok(b) => b,
                // Not retried: the same server would send the same bomb again.
                Err(BodyError::TooLarge) => {
                    return Err(PapersError::TooLarge {
                        url: url.to_string(),
                        limit_mib: MAX_BODY_BYTES >> 20,
                        setting: setting.to_string(),
                    })
                }
                Err(BodyError::Io(e)) => {
                    if self.deadline_passed() {
                        return Err(self.deadline_error(url, format!(" (reading the body: {e})")));
                    }
                    if more {
                        last_failure = format!("last attempt: reading the body: {e}");
                        self.sleep_backoff(attempt, url, &last_failure)?;
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
                    last_failure = "last attempt: HTTP 429".into();
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
                    last_failure = format!("last attempt: HTTP {status}");
                    match retry_after {
                        Some(w) => self.cool_down(&host, w.min(self.config.max_wait)),
                        None => self.sleep_backoff(attempt, url, &last_failure)?,
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

    /// A spinner for one request: what is being fetched, bytes so far, time spent.
    fn request_bar(&self, url: &str) -> ProgressBar {
        let bar = self.progress.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(format!("{}: waiting for the server", short_url(url)));
        if !self.progress.is_hidden() {
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        bar
    }

    /// The decompressed body, at most [`MAX_BODY_BYTES`], reporting progress as it arrives.
    fn read_body(
        &self,
        body: &mut ureq::Body,
        url: &str,
        bar: &ProgressBar,
    ) -> std::result::Result<String, BodyError> {
        use std::io::Read;
        let started = Instant::now();
        let mut next_notice = SLOW_NOTICE;
        // The wire limit stops plain oversized bodies early; the count below stops inflated ones.
        let mut reader = body.with_config().limit(MAX_BODY_BYTES).reader();
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let over_wire_limit = e
                        .get_ref()
                        .and_then(|i| i.downcast_ref::<ureq::Error>())
                        .is_some_and(|u| matches!(u, ureq::Error::BodyExceedsLimit(_)));
                    return Err(if over_wire_limit {
                        BodyError::TooLarge
                    } else {
                        BodyError::Io(e)
                    });
                }
            };
            if (out.len() + n) as u64 > MAX_BODY_BYTES {
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(&chunk[..n]);
            bar.set_message(format!(
                "{}: {} received",
                short_url(url),
                human_bytes(out.len() as u64)
            ));
            if self.config.progress && self.progress.is_hidden() && started.elapsed() >= next_notice
            {
                eprintln!(
                    "{}: {} received after {} s, still reading{}",
                    short_url(url),
                    human_bytes(out.len() as u64),
                    started.elapsed().as_secs(),
                    match self.config.deadline {
                        Some(d) => format!(" (--deadline {} s)", d.as_secs()),
                        None => String::new(),
                    }
                );
                next_notice += SLOW_NOTICE;
            }
        }
        Ok(match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn min_interval(&self, url: &str) -> Duration {
        if url.starts_with(&self.config.biorxiv_url) {
            self.config.web_min_interval
        } else {
            self.config.api_min_interval
        }
    }

    /// Blocks until this host may be asked again, then records the request time.
    fn wait_for_slot(&self, host: &str, url: &str, last: &str) -> Result<()> {
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
                None => return Ok(()),
                Some(d) => self.pause(d, url, "before asking this host again", last)?,
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

    fn sleep_backoff(&self, attempt: u32, url: &str, last: &str) -> Result<()> {
        self.pause(self.backoff(attempt), url, "before retrying", last)
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
        if meta.len() > MAX_BODY_BYTES {
            return None;
        }
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

/// A URL short enough for a spinner line: host and the start of the path, no query.
fn short_url(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let path = rest.split(['?', '#']).next().unwrap_or(rest);
    if path.chars().count() > 60 {
        format!("{}...", path.chars().take(57).collect::<String>())
    } else {
        path.to_string()
    }
}

fn human_bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    }
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
