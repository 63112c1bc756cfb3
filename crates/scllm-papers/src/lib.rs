//! Literature for scllm: find bioRxiv/medRxiv preprints (Europe PMC search, the official bioRxiv
//! API, optionally bioRxiv's HTML search), read their JATS full text, extract genes, cell types,
//! models, datasets and reported metrics with scllm's own identifiers, and keep it all in a
//! knowledge graph (SQLite by default; Neo4j and FalkorDB through the same Cypher; Neo4j CSV export).
//!
//! ```no_run
//! use scllm_papers::{ClientConfig, PapersClient, SearchBackend};
//! let client = PapersClient::new(ClientConfig::from_env());
//! let mut search = client.search("scGPT cell type annotation", SearchBackend::EuropePmc, 25);
//! search.load_until(50)?;
//! for p in &search.results {
//!     println!("{} {}", p.doi, p.title);
//! }
//! # Ok::<(), scllm_papers::PapersError>(())
//! ```

pub mod chunk;
pub mod cli;
pub mod client;
pub mod config;
pub mod embed;
pub mod error;
pub mod extract;
pub mod graph;
pub mod html;
pub mod http;
pub mod jats;
mod json_util;
pub mod lookup;
pub mod paper;

pub use client::{PapersClient, SearchBackend, SearchResults};
pub use config::ClientConfig;
pub use error::{PapersError, Result};
pub use paper::{FullText, FullTextOutcome, Paper};

/// Metadata from `details` + `pubs`, and the full text when asked. A full-text source that is
/// blocked or rate limited leaves `full_text` empty and says why in the returned note, because
/// the metadata alone is still worth having.
pub fn fetch_paper(
    client: &PapersClient,
    doi: &str,
    want_full_text: bool,
) -> Result<(Paper, Option<String>)> {
    let mut paper = client.paper(doi)?;
    if !want_full_text {
        return Ok((paper, None));
    }
    match client.full_text(&mut paper) {
        Ok(FullTextOutcome::Jats(text)) => {
            paper.full_text = Some(text);
            Ok((paper, None))
        }
        Ok(FullTextOutcome::PdfOnly { pdf_url, reason }) => {
            Ok((paper, Some(format!("PDF only ({reason}): {pdf_url}"))))
        }
        Err(e @ (PapersError::Blocked { .. } | PapersError::RateLimited { .. })) => {
            Ok((paper, Some(format!("full text unavailable: {e}"))))
        }
        Err(e) => Err(e),
    }
}
