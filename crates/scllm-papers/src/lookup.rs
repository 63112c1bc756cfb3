//! `search` and `show`: the lookups `scllm papers search|show` and the Python binding
//! (`scllm.papers`) share.

use indicatif::{ProgressBar, ProgressStyle};

use crate::client::{normalize_doi, PapersClient, SearchBackend};
use crate::error::Result;
use crate::paper::{FullTextOutcome, Paper};

/// Up to `limit` preprints matching `query`, paging `backend` until there are enough or the
/// results end.
pub fn search(
    client: &PapersClient,
    query: &str,
    backend: SearchBackend,
    limit: usize,
) -> Result<Vec<Paper>> {
    let mut results = client.search(query, backend, limit.clamp(1, 100));
    let bar = progress(client, limit as u64, "searching");
    while results.results.len() < limit && !results.is_exhausted() {
        if results.more()? == 0 {
            break;
        }
        bar.set_position(results.results.len().min(limit) as u64);
    }
    bar.finish_and_clear();
    results.results.truncate(limit);
    Ok(results.results)
}

/// One preprint: its newest version's metadata, every version api.biorxiv.org knows, and the
/// full text when asked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Shown {
    pub paper: Paper,
    pub versions: Vec<Paper>,
    pub full_text: Option<FullTextOutcome>,
}

/// The preprint `doi` (a DOI, a `doi.org` link or a bioRxiv URL), with its full text when
/// `full_text` (JATS from Europe PMC or bioRxiv, else where the PDF is).
pub fn show(client: &PapersClient, doi: &str, full_text: bool) -> Result<Shown> {
    let doi = normalize_doi(doi)?;
    let versions = client.details_by_doi(&doi, None)?;
    let mut paper = client.paper(&doi)?;
    let full_text = if full_text {
        let outcome = client.full_text(&mut paper)?;
        if let FullTextOutcome::Jats(t) = &outcome {
            paper.full_text = Some(t.clone());
        }
        Some(outcome)
    } else {
        None
    };
    Ok(Shown {
        paper,
        versions,
        full_text,
    })
}

/// A bar for `len` steps, drawn with the client's per-request spinners so neither overwrites
/// the other (nowhere when the client's `progress` is off).
pub(crate) fn progress(client: &PapersClient, len: u64, what: &str) -> ProgressBar {
    let bar = client.http().progress().add(ProgressBar::new(len));
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
