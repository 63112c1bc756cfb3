//! `scllm.papers.search` / `show`: scllm-papers' lookups (the functions `scllm papers search|show`
//! call), answered as JSON for the Python half to turn into DataFrames.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use scllm_papers::{ClientConfig, Paper, PapersClient, PapersError, SearchBackend};

/// A client as the CLI makes one from its flags: the `SCLLM_*` environment's defaults, the
/// given server addresses, cache and limits; no progress drawn (a notebook does not show it).
/// Handed over as a dict (`scllm.papers`' keyword arguments, by name).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Client {
    europepmc_url: Option<String>,
    biorxiv_api_url: Option<String>,
    biorxiv_url: Option<String>,
    cache_dir: Option<PathBuf>,
    no_cache: bool,
    min_interval_ms: u64,
    deadline: u64,
}

impl Client {
    fn build(self) -> PapersClient {
        let mut c = ClientConfig::from_env();
        if let Some(u) = self.europepmc_url {
            c.europepmc_url = u;
        }
        if let Some(u) = self.biorxiv_api_url {
            c.biorxiv_api_url = u;
        }
        if let Some(u) = self.biorxiv_url {
            c.biorxiv_url = u;
        }
        if self.no_cache {
            c.cache_dir = None;
        } else if let Some(d) = self.cache_dir {
            c.cache_dir = Some(d);
        }
        c.api_min_interval = Duration::from_millis(self.min_interval_ms);
        c.web_min_interval = Duration::from_millis(self.min_interval_ms.max(3000));
        c.deadline = (self.deadline > 0).then(|| Duration::from_secs(self.deadline));
        c.progress = false;
        PapersClient::new(c)
    }
}

/// Bad input (a DOI that is not one, a DOI no server knows, a wrong-schema answer) is a
/// `ValueError`; a server that cannot be reached or answers with an error a `ConnectionError`;
/// the rest a `RuntimeError` — each with the CLI's one-line message.
fn to_py(e: PapersError) -> PyErr {
    let msg = e.to_string();
    // a DOI no server knows is the caller's to fix, as a malformed one
    if e.is_bad_input()
        || matches!(
            e,
            PapersError::UnknownDoi { .. } | PapersError::NotFound { .. }
        )
    {
        return PyValueError::new_err(msg);
    }
    match e {
        PapersError::Http { .. }
        | PapersError::RateLimited { .. }
        | PapersError::Blocked { .. }
        | PapersError::Network { .. }
        | PapersError::Deadline { .. } => PyConnectionError::new_err(msg),
        _ => PyRuntimeError::new_err(msg),
    }
}

/// Up to `limit` preprints matching `query` (Europe PMC, or bioRxiv's HTML search), as a JSON
/// list of papers, each with its `url`.
#[pyfunction]
fn papers_search(
    py: Python<'_>,
    query: String,
    limit: usize,
    html_search: bool,
    client: Client,
) -> PyResult<String> {
    let client = client.build();
    let backend = if html_search {
        SearchBackend::BiorxivHtml
    } else {
        SearchBackend::EuropePmc
    };
    let papers = py
        .detach(|| scllm_papers::lookup::search(&client, &query, backend, limit))
        .map_err(to_py)?;
    let rows: Vec<serde_json::Value> = papers.iter().map(with_url).collect();
    Ok(serde_json::Value::from(rows).to_string())
}

/// A paper's record with its link back (`Paper::url`, the one rule for it).
fn with_url(p: &Paper) -> serde_json::Value {
    let mut v = serde_json::to_value(p).unwrap_or_default();
    v["url"] = p.url().into();
    v
}

/// One preprint (`paper`, `versions`, `full_text` when asked) as JSON.
#[pyfunction]
fn papers_show(py: Python<'_>, doi: String, full_text: bool, client: Client) -> PyResult<String> {
    let client = client.build();
    let shown = py
        .detach(|| scllm_papers::lookup::show(&client, &doi, full_text))
        .map_err(to_py)?;
    let out = serde_json::json!({
        "paper": with_url(&shown.paper),
        "versions": shown.versions.iter().map(with_url).collect::<Vec<_>>(),
        "full_text": shown.full_text,
    });
    Ok(out.to_string())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(papers_search, m)?)?;
    m.add_function(wrap_pyfunction!(papers_show, m)?)?;
    Ok(())
}
