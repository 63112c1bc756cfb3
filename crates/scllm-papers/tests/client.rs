//! The client against a loopback server serving synthetic fixtures.

mod common;

use std::time::Duration;

use common::{fixture, listing_page, standard_routes, FixtureServer, Reply};
use scllm_papers::client::SearchBackend;
use scllm_papers::http::CachePolicy;
use scllm_papers::{ClientConfig, FullTextOutcome, PapersClient, PapersError};

fn client(server: &FixtureServer) -> PapersClient {
    PapersClient::new(ClientConfig::for_tests(&server.base))
}

#[test]
fn details_listing_pages_by_the_returned_count_of_30() {
    let server = FixtureServer::start(|target, _, _| {
        let cursor: usize = target
            .split('/')
            .nth(6)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Reply::json(listing_page(cursor, 30, 67, false))
    });
    let papers = client(&server)
        .details_interval("biorxiv", "2099-01-01", "2099-01-31", None, None)
        .unwrap();
    assert_eq!(papers.len(), 67);
    let cursors: Vec<String> = server
        .targets()
        .iter()
        .map(|t| t.split('/').nth(6).unwrap().to_string())
        .collect();
    assert_eq!(cursors, ["0", "30", "60"]);
    assert_eq!(papers[66].title, "Synthetic listing record 66");
}

#[test]
fn details_listing_pages_by_100_with_cursor_and_total_as_strings() {
    let server = FixtureServer::start(|target, _, _| {
        let cursor: usize = target
            .split('/')
            .nth(6)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Reply::json(listing_page(cursor, 100, 250, true))
    });
    let papers = client(&server)
        .details_interval(
            "medrxiv",
            "2099-01-01",
            "2099-01-31",
            Some("cell biology"),
            None,
        )
        .unwrap();
    assert_eq!(papers.len(), 250);
    let targets = server.targets();
    assert_eq!(targets.len(), 3);
    assert!(
        targets[1].contains("/100/json?category=cell_biology"),
        "{targets:?}"
    );
    assert!(targets[2].contains("/200/json"));
}

#[test]
fn listing_stops_at_the_limit_without_fetching_more_pages() {
    let server = FixtureServer::start(|target, _, _| {
        let cursor: usize = target
            .split('/')
            .nth(6)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Reply::json(listing_page(cursor, 30, 67, false))
    });
    let papers = client(&server)
        .details_interval("biorxiv", "2099-01-01", "2099-01-31", None, Some(40))
        .unwrap();
    assert_eq!(papers.len(), 40);
    assert_eq!(server.targets().len(), 2);
}

#[test]
fn details_by_doi_returns_all_versions_in_order() {
    let server = FixtureServer::start(standard_routes);
    let versions = client(&server)
        .details_by_doi("doi:10.1101/2099.01.01.900001v2", None)
        .unwrap();
    assert_eq!(
        versions.iter().map(|p| p.version).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)]
    );
    assert_eq!(versions[2].authors, ["Doe, J.", "Roe, R.", "Poe, A."]);
    assert_eq!(
        versions[2].published_doi, None,
        "\"NA\" is no published DOI"
    );
    assert_eq!(versions[2].server.as_deref(), Some("biorxiv"));
}

#[test]
fn no_posts_found_is_empty_not_an_error() {
    let server = FixtureServer::start(standard_routes);
    let c = client(&server);
    let listing = c
        .details_interval("biorxiv", "2099-12-01", "2099-12-02", None, None)
        .unwrap();
    assert!(listing.is_empty());
    match c.details_by_doi("10.1101/2099.09.09.999999", None) {
        Err(PapersError::UnknownDoi { status, .. }) => assert_eq!(status, "no posts found"),
        other => panic!("expected UnknownDoi, got {other:?}"),
    }
    // bioRxiv first, then medRxiv: both asked before giving up.
    assert_eq!(server.targets().len(), 3);
}

#[test]
fn pubs_crosswalk_hit_and_miss() {
    let server = FixtureServer::start(standard_routes);
    let c = client(&server);
    let hit = c
        .pubs_by_doi("10.1101/2099.01.01.900001", "biorxiv")
        .unwrap()
        .unwrap();
    assert_eq!(hit.published_doi, "10.9999/synthetic.2099.001");
    assert_eq!(
        hit.published_journal.as_deref(),
        Some("Journal of Synthetic Results")
    );
    assert!(c
        .pubs_by_doi("10.1101/2099.02.02.900002", "biorxiv")
        .unwrap()
        .is_none());
    let paper = c.paper("10.1101/2099.01.01.900001").unwrap();
    assert_eq!(paper.version, Some(3));
    assert_eq!(
        paper.published_journal.as_deref(),
        Some("Journal of Synthetic Results")
    );
}

#[test]
fn http_429_with_retry_after_is_honoured_then_succeeds() {
    let server = FixtureServer::start(|_, n, _| {
        if n == 0 {
            Reply::status(429, "slow down").header("Retry-After", "1")
        } else {
            Reply::json(fixture("api/details_doi.json"))
        }
    });
    let versions = client(&server)
        .details_by_doi("10.1101/2099.01.01.900001", Some("biorxiv"))
        .unwrap();
    assert_eq!(versions.len(), 3);
    let log = server.log();
    assert_eq!(log.len(), 2);
    let gap = log[1].at - log[0].at;
    assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
}

#[test]
fn retry_after_is_capped_by_max_wait() {
    let server = FixtureServer::start(|_, n, _| {
        if n == 0 {
            Reply::status(429, "").header("Retry-After", "3600")
        } else {
            Reply::json(fixture("api/details_doi.json"))
        }
    });
    let mut cfg = ClientConfig::for_tests(&server.base);
    cfg.max_wait = Duration::from_millis(200);
    let start = std::time::Instant::now();
    PapersClient::new(cfg)
        .details_by_doi("10.1101/2099.01.01.900001", Some("biorxiv"))
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn server_errors_are_retried_then_succeed() {
    let server = FixtureServer::start(|_, n, _| match n {
        0 => Reply::status(503, "busy"),
        1 => Reply::status(500, "oops"),
        _ => Reply::json(fixture("api/details_doi.json")),
    });
    let versions = client(&server)
        .details_by_doi("10.1101/2099.01.01.900001", Some("biorxiv"))
        .unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(server.targets().len(), 3);
}

#[test]
fn persistent_server_errors_give_one_clear_error() {
    let server = FixtureServer::start(|_, _, _| Reply::status(502, "bad gateway"));
    let mut cfg = ClientConfig::for_tests(&server.base);
    cfg.max_retries = 2;
    let err = PapersClient::new(cfg)
        .details_by_doi("10.1101/2099.01.01.900001", Some("biorxiv"))
        .unwrap_err();
    match &err {
        PapersError::Http {
            status, attempts, ..
        } => assert_eq!((*status, *attempts), (502, 3)),
        other => panic!("expected Http, got {other:?}"),
    }
    assert_eq!(server.targets().len(), 3);
    assert!(!err.to_string().contains('\n'));
}

#[test]
fn cloudflare_challenge_is_detected_named_and_not_retried() {
    let server = FixtureServer::start(|_, _, _| {
        Reply::status(403, fixture("web/challenge.html")).header("cf-mitigated", "challenge")
    });
    let c = client(&server);
    let mut search = c.search("synthetic", SearchBackend::BiorxivHtml, 75);
    let err = search.more().unwrap_err();
    assert!(matches!(err, PapersError::Blocked { .. }), "{err:?}");
    assert!(err.to_string().contains("Cloudflare"));
    assert_eq!(server.targets().len(), 1, "a challenge is not retried");
}

#[test]
fn cloudflare_1015_rate_limit_page_is_blocked_too() {
    let server = FixtureServer::start(|_, _, _| Reply::status(429, "error code: 1015"));
    let err = client(&server)
        .details_by_doi("10.1101/2099.01.01.900001", Some("biorxiv"))
        .unwrap_err();
    assert!(err.to_string().contains("1015"), "{err}");
    assert_eq!(server.targets().len(), 1);
}

#[test]
fn html_search_pages_until_the_last_page_without_crashing() {
    let server = FixtureServer::start(standard_routes);
    let c = client(&server);
    let mut search = c.search("synthetic", SearchBackend::BiorxivHtml, 75);
    assert_eq!(search.more().unwrap(), 2);
    assert_eq!(search.more().unwrap(), 1);
    assert!(search.is_exhausted());
    assert_eq!(
        search.more().unwrap(),
        0,
        "more() on the last page is a no-op"
    );
    assert_eq!(search.results[2].doi, "10.1101/2099.03.03.900003");
    assert_eq!(search.results[2].version, Some(2));
    assert!(server.targets()[0].starts_with("/web/search/synthetic%20numresults%3A75"));
    // A second search starts from nothing (BioRxivist shared results between searches).
    let mut second = c.search("synthetic", SearchBackend::BiorxivHtml, 75);
    assert!(second.results.is_empty());
    second.load_until(10).unwrap();
    assert_eq!(second.results.len(), 3);
}

#[test]
fn europepmc_search_restricts_to_preprints_and_pages_by_cursor() {
    let server = FixtureServer::start(standard_routes);
    let c = client(&server);
    let mut search = c.search("synthetic", SearchBackend::EuropePmc, 2);
    search.load_until(100).unwrap();
    assert_eq!(search.results.len(), 3);
    assert_eq!(search.hit_count, Some(3));
    let targets = server.targets();
    assert_eq!(targets.len(), 3, "stops when a page is empty: {targets:?}");
    assert!(targets[0].contains("SRC%3APPR") && targets[0].contains("PUBLISHER%3A%22bioRxiv%22"));
    assert!(targets[0].contains("cursorMark=%2A") && targets[1].contains("cursorMark=CURSOR2"));
    let first = &search.results[0];
    assert_eq!(first.europepmc_id.as_deref(), Some("PPR/PPR900001"));
    assert_eq!(
        first.abstract_text,
        "Background We compare scGPT and Geneformer."
    );
    assert_eq!(first.license.as_deref(), Some("cc_by"));
    assert_eq!(search.results[2].server.as_deref(), Some("medrxiv"));
}

#[test]
fn europepmc_search_fetches_no_more_pages_than_the_limit_needs() {
    let server = FixtureServer::start(standard_routes);
    let c = client(&server);
    let mut search = c.search("synthetic", SearchBackend::EuropePmc, 2);
    search.load_until(2).unwrap();
    assert_eq!(search.results.len(), 2);
    assert_eq!(server.targets().len(), 1);
}

#[test]
fn full_text_comes_from_europepmc_jats_with_structure_kept() {
    let server = FixtureServer::start(standard_routes);
    let c = client(&server);
    let mut paper = c.paper("10.1101/2099.01.01.900001").unwrap();
    let FullTextOutcome::Jats(text) = c.full_text(&mut paper).unwrap() else {
        panic!("expected JATS");
    };
    assert_eq!(text.source, "europepmc:PPR/PPR900001");
    let headings: Vec<&str> = text.sections.iter().map(|s| s.heading.as_str()).collect();
    assert_eq!(
        headings,
        [
            "Introduction",
            "Results > Marker genes",
            "Results > Benchmark",
            "Methods",
            "Data availability"
        ]
    );
    let marker = &text.sections[1].paragraphs;
    assert_eq!(marker.len(), 2);
    assert!(
        !marker[1].contains("Marker expression"),
        "figure caption kept out of the paragraph"
    );
    assert_eq!(text.figures[0].label, "Figure 1");
    assert_eq!(
        text.figures[0].caption,
        "Marker expression. CD3E in T cells and MS4A1 in B cells."
    );
    assert_eq!(text.tables[0].header_rows, 1);
    assert_eq!(
        text.tables[0].rows[1],
        ["scGPT", "0.81 ± 0.02", "0.77", "0.85"]
    );
    assert_eq!(text.references.len(), 2);
    assert_eq!(text.references[0].doi.as_deref(), Some("10.9999/ref.0001"));
}

#[test]
fn full_text_falls_back_to_the_biorxiv_jatsxml_link() {
    let server = FixtureServer::start(|target, n, body| {
        if target.starts_with("/europepmc/PPR/") {
            Reply::status(404, "")
        } else if target == "/web/content/early/2099/03/01/2099.01.01.900001.source.xml" {
            Reply::ok(fixture("europepmc/PPR900001.xml"))
        } else {
            standard_routes(target, n, body)
        }
    });
    let c = client(&server);
    let mut paper = c.paper("10.1101/2099.01.01.900001").unwrap();
    match c.full_text(&mut paper).unwrap() {
        FullTextOutcome::Jats(t) => assert_eq!(t.source, "biorxiv:jatsxml"),
        other => panic!("expected JATS, got {other:?}"),
    }
}

#[test]
fn pdf_only_paper_says_so() {
    let server = FixtureServer::start(standard_routes);
    let c = client(&server);
    let mut paper = c.paper("10.1101/2099.02.02.900002").unwrap();
    match c.full_text(&mut paper).unwrap() {
        FullTextOutcome::PdfOnly { pdf_url, reason } => {
            assert_eq!(
                pdf_url,
                "https://www.biorxiv.org/content/10.1101/2099.02.02.900002v1.full.pdf"
            );
            assert!(reason.contains("no jatsxml"), "{reason}");
        }
        other => panic!("expected PdfOnly, got {other:?}"),
    }
    assert_eq!(
        paper.published_doi.as_deref(),
        Some("10.9999/journal.2099.12345")
    );
}

#[test]
fn cache_keyed_by_doi_and_version_serves_repeats_offline() {
    let server = FixtureServer::start(standard_routes);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ClientConfig::for_tests(&server.base);
    cfg.cache_dir = Some(dir.path().to_path_buf());
    let c = PapersClient::new(cfg);
    let mut paper = c.paper("10.1101/2099.01.01.900001").unwrap();
    c.full_text(&mut paper).unwrap();
    let sent = c.http().requests_sent();
    let mut again = c.paper("10.1101/2099.01.01.900001").unwrap();
    let second = c.full_text(&mut again).unwrap();
    assert!(matches!(second, FullTextOutcome::Jats(_)));
    assert_eq!(
        c.http().requests_sent(),
        sent,
        "everything came from the cache"
    );
    let cached = dir
        .path()
        .join("content/10.1101_2099.01.01.900001/v3.europepmc.xml");
    assert!(cached.is_file(), "cache file named by DOI and version");
}

#[test]
fn requests_carry_a_descriptive_user_agent_and_are_spaced_per_host() {
    let server = FixtureServer::start(standard_routes);
    let mut cfg = ClientConfig::for_tests(&server.base);
    cfg.api_min_interval = Duration::from_millis(150);
    let c = PapersClient::new(cfg);
    for _ in 0..3 {
        c.http()
            .get(
                &format!(
                    "{}/api/details/biorxiv/10.1101/2099.01.01.900001/na/json",
                    server.base
                ),
                "application/json",
                &CachePolicy::NoCache,
                "test",
            )
            .unwrap();
    }
    let log = server.log();
    assert_eq!(log.len(), 3);
    for pair in log.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(140),
            "requests too close"
        );
    }
    let ua = log[0].user_agent.clone().unwrap_or_default();
    assert!(
        ua.starts_with("scllm-papers/") && ua.contains("single-cell"),
        "{ua}"
    );
}

#[test]
fn a_timeout_is_retried_then_reported_as_a_network_error() {
    let server = FixtureServer::start(|_, _, _| {
        std::thread::sleep(Duration::from_millis(600));
        Reply::json("{}")
    });
    let mut cfg = ClientConfig::for_tests(&server.base);
    cfg.timeout = Duration::from_millis(200);
    cfg.max_retries = 1;
    let err = PapersClient::new(cfg)
        .details_by_doi("10.1101/2099.01.01.900001", Some("biorxiv"))
        .unwrap_err();
    assert!(
        matches!(err, PapersError::Network { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("SCLLM_BIORXIV_API_URL"));
}

#[test]
fn malformed_json_is_a_decode_error_not_a_panic() {
    let server =
        FixtureServer::start(|_, _, _| Reply::json("{\"messages\": [ {\"status\": \"ok\""));
    let err = client(&server)
        .details_by_doi("10.1101/2099.01.01.900001", Some("biorxiv"))
        .unwrap_err();
    assert!(matches!(err, PapersError::Decode { .. }), "{err:?}");
}
