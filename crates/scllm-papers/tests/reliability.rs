//! Issue 19: hostile or broken servers. A gzip bomb stops at the body limit, valid JSON of the
//! wrong shape is an error (not "0 results"), and a slow server shows progress and hits
//! `--deadline` with a clean error.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{fixture, papers, FixtureServer, Reply};
use indicatif::{ProgressDrawTarget, TermLike};
use scllm_papers::client::{parse_api_page, parse_europepmc_search, SearchBackend};
use scllm_papers::http::MAX_BODY_BYTES;
use scllm_papers::{ClientConfig, PapersClient, PapersError};

/// The `PapersError` inside an anyhow chain, as the CLI's `exit_code` looks for it.
fn papers_error(e: &anyhow::Error) -> &PapersError {
    e.chain()
        .find_map(|c| c.downcast_ref::<PapersError>())
        .unwrap_or_else(|| panic!("no PapersError in {e:#}"))
}

/// Peak resident set of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// `len` zero bytes, gzipped: about 1/1000 of `len` on the wire (at the best level: flate2's
/// backends differ at the fast one, miniz_oxide's reaching only 1/100).
fn gzip_zeros(len: u64) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        enc.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    enc.finish().unwrap()
}

// ---- 1. compression bomb ----------------------------------------------------------------------

#[test]
fn gzip_bomb_is_stopped_at_the_decompressed_body_limit_with_bounded_memory() {
    const INFLATED: u64 = 200 << 20;
    let bomb = Arc::new(gzip_zeros(INFLATED));
    assert!(
        (bomb.len() as u64) < MAX_BODY_BYTES / 64,
        "the bomb must be small on the wire: {} bytes",
        bomb.len()
    );
    let served = bomb.clone();
    let server = FixtureServer::start(move |_, _, _| {
        Reply::ok(served.to_vec())
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
    });
    let before = peak_rss();
    let client = PapersClient::new(ClientConfig::for_tests(&server.base));
    let mut search = client.search("bomb", SearchBackend::EuropePmc, 25);
    let err = search.more().unwrap_err();
    let grown = peak_rss().saturating_sub(before);
    println!("peak RSS grew by {} MiB reading the bomb", grown >> 20);
    assert!(matches!(err, PapersError::TooLarge { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&server.base) && msg.contains("64 MiB") && !msg.contains('\n'),
        "{msg}"
    );
    assert!(err.is_bad_input());
    // Reading all 200 MiB would raise the peak by at least that much; the limit keeps it near 64.
    assert!(
        grown < 150 << 20,
        "peak RSS grew by {} MiB while reading the bomb",
        grown >> 20
    );
    // The same bomb is not asked for again: retrying cannot help.
    assert_eq!(server.targets().len(), 1);
}

#[test]
fn a_plain_body_over_the_limit_is_refused_too() {
    let big = Arc::new(vec![b' '; (MAX_BODY_BYTES + 1024) as usize]);
    let served = big.clone();
    let server = FixtureServer::start(move |_, _, _| Reply::json(served.to_vec()));
    let err = PapersClient::new(ClientConfig::for_tests(&server.base))
        .details_by_doi("10.1101/2099.01.01.900001", Some("biorxiv"))
        .unwrap_err();
    assert!(matches!(err, PapersError::TooLarge { .. }), "{err:?}");
}

// ---- 2. valid JSON, wrong schema ---------------------------------------------------------------

#[test]
fn wrong_schema_europepmc_answers_are_errors_naming_the_url_and_field() {
    let cases = [
        (r#"{"foo": 1}"#, "\"resultList\" is missing"),
        (
            r#"{"resultList": 5}"#,
            "\"resultList\" is a number instead of an object",
        ),
        (
            r#"{"hitCount": 3, "resultList": {}}"#,
            "\"resultList.result\" is missing",
        ),
        (
            r#"{"resultList": {"result": "none"}}"#,
            "\"resultList.result\" is a string instead of a list",
        ),
        (
            r#"{"resultList": {"result": [1, 2]}}"#,
            "\"resultList.result[0]\" is a number instead of an object",
        ),
        (
            r#"{"hitCount": {"n": 1}, "resultList": {"result": []}}"#,
            "\"hitCount\" is an object instead of a count",
        ),
        ("[]", "the response is a list instead of a JSON object"),
    ];
    for (body, expected) in cases {
        let server = FixtureServer::start(move |_, _, _| Reply::json(body));
        let client = PapersClient::new(ClientConfig::for_tests(&server.base));
        let mut search = client.search("anything", SearchBackend::EuropePmc, 25);
        let err = search.more().unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PapersError::Schema { .. }), "{body}: {err:?}");
        assert!(err.is_bad_input(), "{body}");
        assert!(
            msg.contains(&format!("{}/europepmc/search?", server.base))
                && msg.contains(expected)
                && msg.contains("SCLLM_EUROPEPMC_URL")
                && !msg.contains('\n'),
            "{body}: {msg}"
        );
    }
}

#[test]
fn wrong_schema_biorxiv_api_answers_are_errors_naming_the_field() {
    let cases = [
        (r#"{"foo": 1}"#, "\"messages\" is missing"),
        (
            r#"{"messages": [{"status": "ok"}]}"#,
            "\"collection\" is missing",
        ),
        (
            r#"{"messages": [{"status": "ok"}], "collection": 5}"#,
            "\"collection\" is a number instead of a list",
        ),
        (
            r#"{"messages": [{"status": "ok"}], "collection": [[]]}"#,
            "\"collection[0]\" is a list instead of an object",
        ),
        (
            r#"{"messages": [{"status": "ok"}], "collection": [{"title": "x"}]}"#,
            "\"collection[0].doi\" is missing",
        ),
        (
            r#"{"messages": "ok", "collection": []}"#,
            "\"messages\" is a string",
        ),
    ];
    for (body, expected) in cases {
        let server = FixtureServer::start(move |_, _, _| Reply::json(body));
        let err = PapersClient::new(ClientConfig::for_tests(&server.base))
            .details_interval("biorxiv", "2099-01-01", "2099-01-02", None, None)
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PapersError::Schema { .. }), "{body}: {err:?}");
        assert!(
            msg.contains(&format!("{}/api/details/biorxiv/", server.base))
                && msg.contains(expected)
                && msg.contains("SCLLM_BIORXIV_API_URL"),
            "{body}: {msg}"
        );
    }
}

#[test]
fn honestly_empty_answers_stay_zero_results() {
    let page = parse_europepmc_search(&fixture("europepmc/search_empty.json"), "t").unwrap();
    assert!(page.papers.is_empty());
    let page = parse_europepmc_search(r#"{"hitCount": 0}"#, "t").unwrap();
    assert!(page.papers.is_empty());
    let page = parse_api_page(&fixture("api/no_posts.json"), "t").unwrap();
    assert!(page.collection.is_empty());
    let page = parse_api_page(r#"{"messages": [{"status": "no posts found"}]}"#, "t").unwrap();
    assert!(page.collection.is_empty());

    let server = FixtureServer::start(|target, _, _| {
        if target.starts_with("/europepmc/search") {
            Reply::json(fixture("europepmc/search_empty.json"))
        } else {
            Reply::json(fixture("api/no_posts.json"))
        }
    });
    papers(&server, &["search", "nothing", "--json"]).unwrap();
    papers(
        &server,
        &["list", "--from", "2099-01-01", "--to", "2099-01-02"],
    )
    .unwrap();
}

#[test]
fn the_search_command_fails_on_a_wrong_schema_answer_as_bad_input() {
    let server = FixtureServer::start(|_, _, _| Reply::json(r#"{"resultList": 5}"#));
    let err = papers(&server, &["search", "scGPT", "--limit", "5"]).unwrap_err();
    let inner = papers_error(&err);
    assert!(matches!(inner, PapersError::Schema { .. }), "{inner:?}");
    assert!(inner.is_bad_input(), "the CLI must exit 2 for this");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("resultList") && msg.contains(&server.base),
        "{msg}"
    );
}

// ---- 3. slow server: progress and --deadline ---------------------------------------------------

/// A slow Europe PMC: the right JSON, one byte every `every`.
fn trickling_server(every: Duration) -> FixtureServer {
    FixtureServer::start(move |_, _, _| {
        Reply::json(fixture("europepmc/search_page1.json").repeat(20)).trickle(every)
    })
}

#[test]
fn a_trickling_server_hits_the_deadline_with_a_clean_error() {
    let server = trickling_server(Duration::from_secs(1));
    let mut cfg = ClientConfig::for_tests(&server.base);
    cfg.timeout = Duration::from_secs(60);
    cfg.deadline = Some(Duration::from_secs(2));
    let client = PapersClient::new(cfg);
    let started = Instant::now();
    let err = client
        .search("slow", SearchBackend::EuropePmc, 25)
        .more()
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, PapersError::Deadline { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&server.base)
            && msg.contains("did not answer within 2 s (--deadline)")
            && !msg.contains('\n'),
        "{msg}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn the_deadline_flag_bounds_a_whole_command() {
    let server = trickling_server(Duration::from_secs(1));
    let started = Instant::now();
    let err = papers(&server, &["--deadline", "2", "search", "slow"]).unwrap_err();
    let took = started.elapsed();
    let msg = format!("{err:#}");
    assert!(
        matches!(papers_error(&err), PapersError::Deadline { .. })
            && msg.contains("did not answer within 2 s (--deadline)"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn a_retry_that_would_outlast_the_deadline_is_not_waited_for() {
    let server =
        FixtureServer::start(|_, _, _| Reply::status(503, "busy").header("Retry-After", "30"));
    let mut cfg = ClientConfig::for_tests(&server.base);
    cfg.max_wait = Duration::from_secs(60);
    cfg.deadline = Some(Duration::from_secs(2));
    let started = Instant::now();
    let err = PapersClient::new(cfg)
        .details_by_doi("10.1101/2099.01.01.900001", Some("biorxiv"))
        .unwrap_err();
    assert!(matches!(err, PapersError::Deadline { .. }), "{err:?}");
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A terminal that keeps what is drawn on it.
#[derive(Debug, Clone, Default)]
struct Captured(Arc<Mutex<String>>);

impl TermLike for Captured {
    fn width(&self) -> u16 {
        120
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.lock().unwrap().push_str(s);
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_slow_response_shows_a_spinner_with_the_bytes_received() {
    let server = trickling_server(Duration::from_millis(100));
    let mut cfg = ClientConfig::for_tests(&server.base);
    cfg.progress = true;
    cfg.timeout = Duration::from_secs(60);
    cfg.deadline = Some(Duration::from_millis(1500));
    let client = PapersClient::new(cfg);
    let term = Captured::default();
    client
        .http()
        .progress()
        .set_draw_target(ProgressDrawTarget::term_like(Box::new(term.clone())));
    let err = client
        .search("slow", SearchBackend::EuropePmc, 25)
        .more()
        .unwrap_err();
    assert!(matches!(err, PapersError::Deadline { .. }), "{err:?}");
    let drawn = term.0.lock().unwrap().clone();
    assert!(
        drawn.contains("/europepmc/search: waiting for the server")
            || drawn.contains(" B received"),
        "{drawn}"
    );
    assert!(
        drawn.contains(" B received"),
        "no byte count drawn: {drawn}"
    );
}
