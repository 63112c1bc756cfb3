//! Issue 19: seeded mutation fuzzing of this crate's two readers, in-process (they are pure Rust):
//! JATS XML full text, and the papers JSON (Europe PMC search pages, api.biorxiv.org `details`
//! and `pubs` pages, and the benchmark-results file `graph add-benchmark` reads from disk). Each
//! reader goes on to what the CLI does with its result (chunks, graph batch), so a panic further
//! down counts too.
//!
//! Every mutant must end in `Ok` or a one-line bad-input error; a panic is a crash and a case
//! over 5 s a hang. `SCLLM_FUZZ_CASES=N` sets the mutants per reader (default 300, the CI size);
//! the test prints one markdown row per reader (peak RSS is 0: cases run in this process).

mod common;

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use common::{fixture, fixtures_dir};
use scllm_fuzz::{CaseResult, Mutator, Outcome, Tally};
use scllm_papers::chunk::{chunk_paper, DEFAULT_MAX_CHARS};
use scllm_papers::client::{papers_from_details, parse_api_page, parse_europepmc_search};
use scllm_papers::extract::Vocabulary;
use scllm_papers::graph::build::{benchmark_batch, paper_batch, parse_benchmark_records};
use scllm_papers::jats::parse_jats;
use scllm_papers::{Paper, PapersError};

/// Fixed so CI runs the same mutants every time; a finding is reproduced from it and the index.
const SEED: u64 = 19;
const HANG: Duration = Duration::from_secs(5);

fn cases() -> usize {
    std::env::var("SCLLM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(300)
}

thread_local! {
    static PANIC_AT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Keeps panic messages of mutants off the test output, but remembers where they happened.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        PANIC_AT.with(|p| *p.borrow_mut() = format!("panicked at {at}: {info}"));
    }));
}

/// Runs one case and sorts it as the CLI contract does: Ok, a one-line bad-input error, another
/// error, or a panic.
fn run_case(f: impl FnOnce() -> Result<(), PapersError>) -> CaseResult {
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(f));
    let seconds = started.elapsed().as_secs_f64();
    let (outcome, tail) = match result {
        Ok(Ok(())) => (Outcome::Accepted, String::new()),
        Ok(Err(e)) => {
            let msg = e.to_string();
            let clean = e.is_bad_input() && !msg.contains('\n') && !msg.is_empty();
            let outcome = if clean {
                Outcome::CleanError
            } else {
                Outcome::OtherError
            };
            (outcome, msg)
        }
        Err(_) => (Outcome::Crash, PANIC_AT.with(|p| p.borrow().clone())),
    };
    let outcome = if seconds > HANG.as_secs_f64() {
        Outcome::Hang
    } else {
        outcome
    };
    CaseResult {
        outcome,
        peak_rss_kib: 0,
        seconds,
        stderr_tail: tail,
    }
}

/// What the CLI does with papers it read: chunk them and build their graph batch.
fn use_papers(papers: &[Paper], vocab: &Vocabulary) {
    for p in papers {
        let chunks = chunk_paper(p, DEFAULT_MAX_CHARS);
        let _ = paper_batch(p, &chunks, vocab, None);
    }
}

fn text(bytes: &[u8]) -> String {
    // As the HTTP client and the cache hand bodies over.
    String::from_utf8_lossy(bytes).into_owned()
}

fn fuzz(
    reader: &str,
    seeds: &[(&str, Vec<u8>)],
    run: impl Fn(&str, &str) -> Result<(), PapersError>,
) -> Tally {
    // Every seed must itself be accepted, or the mutants test little.
    for (kind, seed) in seeds {
        if let Err(e) = run(kind, &text(seed)) {
            panic!("{reader}: seed {kind} is not accepted: {e}");
        }
    }
    let mut mutator = Mutator::new(SEED);
    let mut tally = Tally::new(reader);
    for i in 0..cases() {
        let (kind, seed) = &seeds[i % seeds.len()];
        let mutant = mutator.mutate(seed);
        let r = run_case(|| run(kind, &text(&mutant)));
        tally.add(i, &r);
    }
    tally
}

fn report(tally: &Tally) {
    println!("| reader | cases | accepted | clean errors | other errors | crashes | over memory | hangs | peak RSS MiB | seconds |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!("{}", tally.markdown_row());
    for (i, outcome, tail) in &tally.examples {
        println!("  case {i} (seed {SEED}): {outcome:?}: {tail}");
    }
    assert_eq!(
        (tally.crash, tally.hang),
        (0, 0),
        "{}: crashes or hangs, see the cases above",
        tally.reader
    );
    assert_eq!(tally.cases, cases());
}

#[test]
fn fuzz_jats_full_text() {
    quiet_panics();
    let vocab = Vocabulary::load(Some(&fixtures_dir().join("resources"))).unwrap();
    let seeds = vec![
        ("europepmc", fixture("europepmc/PPR900001.xml").into_bytes()),
        ("dtd", fixture("fuzz/jats_dtd_entities.xml").into_bytes()),
    ];
    let tally = fuzz("papers JATS XML", &seeds, |_, xml| {
        let full_text = parse_jats(xml, "fuzz")?;
        let paper = Paper {
            doi: "10.1101/2099.01.01.900001".into(),
            version: Some(1),
            full_text: Some(full_text),
            ..Paper::default()
        };
        use_papers(&[paper], &vocab);
        Ok(())
    });
    report(&tally);
}

#[test]
fn fuzz_papers_json() {
    quiet_panics();
    let vocab = Vocabulary::load(Some(&fixtures_dir().join("resources"))).unwrap();
    let seeds = vec![
        (
            "europepmc",
            fixture("europepmc/search_page1.json").into_bytes(),
        ),
        (
            "europepmc",
            fixture("europepmc/search_doi_900001.json").into_bytes(),
        ),
        ("details", fixture("api/details_doi.json").into_bytes()),
        ("pubs", fixture("api/pubs_hit.json").into_bytes()),
        ("benchmark", fixture("benchmark_results.json").into_bytes()),
    ];
    let tally = fuzz("papers JSON", &seeds, |kind, body| {
        match kind {
            "europepmc" => {
                let page = parse_europepmc_search(body, "fuzz")?;
                use_papers(&page.papers, &vocab);
            }
            "details" | "pubs" => {
                let page = parse_api_page(body, "fuzz")?;
                if kind == "details" {
                    use_papers(&papers_from_details(&page.collection, "fuzz")?, &vocab);
                }
            }
            _ => {
                let records = parse_benchmark_records(body, "fuzz")?;
                let _ = benchmark_batch(&records, &vocab);
            }
        }
        Ok(())
    });
    report(&tally);
}

#[test]
fn the_harness_counts_a_panic_as_a_crash() {
    quiet_panics();
    let r = run_case(|| {
        let v: Vec<u8> = Vec::new();
        let _ = v[std::hint::black_box(3)];
        Ok(())
    });
    assert_eq!(r.outcome, Outcome::Crash);
    assert!(r.stderr_tail.contains("tests/fuzz.rs"), "{}", r.stderr_tail);
    let r = run_case(|| Err(PapersError::InvalidInput("x: bad".into())));
    assert_eq!(r.outcome, Outcome::CleanError);
    let r = run_case(|| Err(PapersError::store("sqlite", "disk full")));
    assert_eq!(r.outcome, Outcome::OtherError);
}
