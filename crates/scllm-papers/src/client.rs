//! Sources: Europe PMC search and full text, the official bioRxiv API (`details`, `pubs`),
//! bioRxiv's HTML search as an opt-in fallback, and the bioRxiv `jatsxml` link.

use serde::Serialize;
use serde_json::Value;

use crate::config::{ClientConfig, ENV_BIORXIV_API_URL, ENV_BIORXIV_URL, ENV_EUROPEPMC_URL};
use crate::error::{PapersError, Result};
use crate::http::{encode_component, CachePolicy, HttpClient};
use crate::json_util::{lenient_u64, strip_tags, text};
use crate::paper::{strip_version, FullTextOutcome, Paper};

/// Europe PMC's largest page.
const EUROPEPMC_MAX_PAGE: usize = 1000;
/// A guard against servers whose paging never ends.
const MAX_PAGES: usize = 10_000;

/// One page as the bioRxiv API reports it.
#[derive(Debug, Clone)]
pub struct ApiPage {
    pub status: String,
    pub cursor: Option<u64>,
    pub count: Option<u64>,
    pub total: Option<u64>,
    pub collection: Vec<Value>,
}

/// A row of the `pubs` crosswalk: a preprint and the journal article it became.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Publication {
    pub preprint_doi: String,
    pub published_doi: String,
    pub published_journal: Option<String>,
    pub published_date: Option<String>,
}

/// Which search backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchBackend {
    /// Europe PMC REST restricted to bioRxiv/medRxiv preprints (relevance ranked, cursor paging).
    EuropePmc,
    /// bioRxiv's HTML search page, 75 per page; Cloudflare often blocks it.
    BiorxivHtml,
}

/// Search results that page on demand; its state belongs to this search alone
/// (BioRxivist shared result lists between searches through class attributes).
pub struct SearchResults<'c> {
    client: &'c PapersClient,
    backend: SearchBackend,
    query: String,
    page_size: usize,
    next: Option<String>,
    pub results: Vec<Paper>,
    /// Total hits the server reported, when it reports one.
    pub hit_count: Option<u64>,
    pub pages_loaded: usize,
}

impl SearchResults<'_> {
    /// Loads the next page; returns how many papers it added (0 once exhausted, never an error
    /// for being on the last page).
    pub fn more(&mut self) -> Result<usize> {
        let Some(next) = self.next.take() else {
            return Ok(0);
        };
        let before = self.results.len();
        match self.backend {
            SearchBackend::EuropePmc => {
                let url = format!(
                    "{}/search?query={}&format=json&resultType=core&pageSize={}&cursorMark={}",
                    self.client.config().europepmc_url,
                    encode_component(&europepmc_preprint_query(&self.query)),
                    self.page_size,
                    encode_component(&next)
                );
                let body = self.client.http.get(
                    &url,
                    "application/json",
                    &CachePolicy::Listing,
                    ENV_EUROPEPMC_URL,
                )?;
                let page = parse_europepmc_search(&body.body, &url)?;
                self.hit_count = page.hit_count.or(self.hit_count);
                let added = page.papers.len();
                self.results.extend(page.papers);
                // Europe PMC repeats the cursor on the last page.
                if added > 0 && page.next_cursor.as_deref().is_some_and(|c| c != next) {
                    self.next = page.next_cursor;
                }
            }
            SearchBackend::BiorxivHtml => {
                let url = if next.starts_with('/') {
                    format!("{}{}", self.client.config().biorxiv_url, next)
                } else {
                    next.clone()
                };
                let body = self.client.http.get(
                    &url,
                    "text/html",
                    &CachePolicy::Listing,
                    ENV_BIORXIV_URL,
                )?;
                let page = crate::html::parse_search_page(&body.body);
                self.results.extend(page.papers);
                self.next = page.next_href;
            }
        }
        self.pages_loaded += 1;
        Ok(self.results.len() - before)
    }

    /// Pages until `limit` papers are loaded or the results end.
    pub fn load_until(&mut self, limit: usize) -> Result<()> {
        while self.results.len() < limit && !self.is_exhausted() {
            if self.more()? == 0 {
                break;
            }
        }
        self.results.truncate(limit);
        Ok(())
    }

    pub fn is_exhausted(&self) -> bool {
        self.next.is_none()
    }
}

/// The literature client: every source behind one polite HTTP client.
pub struct PapersClient {
    http: HttpClient,
}

impl PapersClient {
    pub fn new(config: ClientConfig) -> Self {
        PapersClient {
            http: HttpClient::new(config),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        self.http.config()
    }

    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Starts a search; nothing is fetched until [`SearchResults::more`] or `load_until`.
    pub fn search(
        &self,
        query: &str,
        backend: SearchBackend,
        page_size: usize,
    ) -> SearchResults<'_> {
        let next = match backend {
            SearchBackend::EuropePmc => "*".to_string(),
            // BioRxivist's URL form: terms joined by '+', then " numresults:75", all escaped.
            SearchBackend::BiorxivHtml => format!(
                "/search/{}",
                encode_component(&format!(
                    "{} numresults:75",
                    query.split_whitespace().collect::<Vec<_>>().join("+")
                ))
            ),
        };
        SearchResults {
            client: self,
            backend,
            query: query.to_string(),
            page_size: page_size.clamp(1, EUROPEPMC_MAX_PAGE),
            next: Some(next),
            results: Vec::new(),
            hit_count: None,
            pages_loaded: 0,
        }
    }

    /// Fetches one page of the bioRxiv API.
    pub fn api_page(&self, path: &str, policy: &CachePolicy) -> Result<ApiPage> {
        let url = format!("{}{}", self.config().biorxiv_api_url, path);
        let body = self
            .http
            .get(&url, "application/json", policy, ENV_BIORXIV_API_URL)?;
        parse_api_page(&body.body, &url)
    }

    /// Pages an interval endpoint by the count the server returns (30 or 100 per page have both
    /// been seen), until `total` is reached, a page comes back empty, or `limit` is met.
    /// `check` vets each page's records (with the page's URL) before paging on, so a server of
    /// the wrong kind fails on its first page.
    fn page_api(
        &self,
        path_for_cursor: impl Fn(u64) -> String,
        limit: Option<usize>,
        check: impl Fn(&[Value], &str) -> Result<()>,
    ) -> Result<Vec<Value>> {
        let mut cursor = 0u64;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let path = path_for_cursor(cursor);
            let page = self.api_page(&path, &CachePolicy::Listing)?;
            if page.collection.is_empty() {
                break;
            }
            check(
                &page.collection,
                &format!("{}{path}", self.config().biorxiv_api_url),
            )?;
            let step = page
                .count
                .filter(|&c| c > 0)
                .unwrap_or(page.collection.len() as u64);
            out.extend(page.collection);
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            cursor += step;
            if page.total.is_some_and(|t| cursor >= t) {
                break;
            }
        }
        if let Some(l) = limit {
            out.truncate(l);
        }
        Ok(out)
    }

    /// `details` over a date interval (`YYYY-MM-DD`), optionally one category.
    pub fn details_interval(
        &self,
        server: &str,
        from: &str,
        to: &str,
        category: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<Paper>> {
        let query = category
            .map(|c| {
                format!(
                    "?category={}",
                    encode_component(&c.trim().replace(' ', "_"))
                )
            })
            .unwrap_or_default();
        let rows = self.page_api(
            |cursor| format!("/details/{server}/{from}/{to}/{cursor}/json{query}"),
            limit,
            |rows, what| papers_from_details(rows, what).map(|_| ()),
        )?;
        Ok(rows.iter().map(paper_from_details).collect())
    }

    /// All versions of a DOI, oldest first. Tries `server`, or bioRxiv then medRxiv.
    pub fn details_by_doi(&self, doi: &str, server: Option<&str>) -> Result<Vec<Paper>> {
        let doi = normalize_doi(doi)?;
        let servers: Vec<&str> = match server {
            Some(s) => vec![s],
            None => vec!["biorxiv", "medrxiv"],
        };
        let mut last_status = String::new();
        for s in servers {
            let path = format!("/details/{s}/{doi}/na/json");
            let page = self.api_page(&path, &CachePolicy::Listing)?;
            if !page.collection.is_empty() {
                let what = format!("{}{path}", self.config().biorxiv_api_url);
                let mut papers = papers_from_details(&page.collection, &what)?;
                papers.sort_by_key(|p| p.version);
                return Ok(papers);
            }
            last_status = page.status;
        }
        Err(PapersError::UnknownDoi {
            doi,
            status: last_status,
        })
    }

    /// Latest version of a DOI with the `pubs` crosswalk filled in.
    pub fn paper(&self, doi: &str) -> Result<Paper> {
        let versions = self.details_by_doi(doi, None)?;
        let mut latest = versions
            .last()
            .cloned()
            .ok_or_else(|| PapersError::UnknownDoi {
                doi: doi.to_string(),
                status: "empty collection".into(),
            })?;
        if latest.published_doi.is_none() || latest.published_journal.is_none() {
            let server = latest.server.clone().unwrap_or_else(|| "biorxiv".into());
            if let Some(publication) = self.pubs_by_doi(&latest.doi, &server)? {
                latest.published_doi = Some(publication.published_doi);
                latest.published_journal = publication.published_journal;
            }
        }
        Ok(latest)
    }

    /// The journal version of a preprint, if any ("no articles found" is `None`, not an error).
    pub fn pubs_by_doi(&self, doi: &str, server: &str) -> Result<Option<Publication>> {
        let doi = normalize_doi(doi)?;
        let page = self.api_page(
            &format!("/pubs/{server}/{doi}/na/json"),
            &CachePolicy::Listing,
        )?;
        Ok(page.collection.iter().find_map(publication_from_pubs))
    }

    /// `pubs` over a date interval.
    pub fn pubs_interval(
        &self,
        server: &str,
        from: &str,
        to: &str,
        limit: Option<usize>,
    ) -> Result<Vec<Publication>> {
        let rows = self.page_api(
            |cursor| format!("/pubs/{server}/{from}/{to}/{cursor}"),
            limit,
            |_, _| Ok(()),
        )?;
        Ok(rows.iter().filter_map(publication_from_pubs).collect())
    }

    /// Looks a DOI up in Europe PMC to learn its preprint id (needed for `fullTextXML`).
    pub fn europepmc_record(&self, doi: &str) -> Result<Option<Paper>> {
        let url = format!(
            "{}/search?query={}&format=json&resultType=core&pageSize=5",
            self.config().europepmc_url,
            encode_component(&format!("DOI:\"{doi}\" AND SRC:PPR"))
        );
        let body = self.http.get(
            &url,
            "application/json",
            &CachePolicy::Listing,
            ENV_EUROPEPMC_URL,
        )?;
        let page = parse_europepmc_search(&body.body, &url)?;
        Ok(page
            .papers
            .into_iter()
            .find(|p| p.doi.eq_ignore_ascii_case(doi)))
    }

    /// Full text as JATS: Europe PMC first (no Cloudflare), then bioRxiv's `jatsxml` link.
    /// A paper with neither is reported as PDF-only rather than as an error.
    pub fn full_text(&self, paper: &mut Paper) -> Result<FullTextOutcome> {
        let mut reasons = Vec::new();
        if paper.europepmc_id.is_none() {
            match self.europepmc_record(&paper.doi) {
                Ok(Some(rec)) => paper.merge_missing(&rec),
                Ok(None) => reasons.push("not indexed by Europe PMC".to_string()),
                Err(e @ PapersError::Deadline { .. }) => return Err(e),
                Err(e) => reasons.push(format!("Europe PMC lookup failed: {e}")),
            }
        }
        if let Some(id) = paper.europepmc_id.clone() {
            let url = format!("{}/{}/fullTextXML", self.config().europepmc_url, id);
            let policy = cache_policy_for(paper, "europepmc.xml");
            match self
                .http
                .get(&url, "application/xml", &policy, ENV_EUROPEPMC_URL)
            {
                Ok(body) => {
                    let text = crate::jats::parse_jats(&body.body, &format!("europepmc:{id}"))?;
                    return Ok(FullTextOutcome::Jats(text));
                }
                Err(PapersError::NotFound { .. }) => {
                    reasons.push(format!("Europe PMC has no full text for {id}"))
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(link) = paper.jatsxml_url.clone() {
            let url = self.rebase_biorxiv(&link);
            let policy = cache_policy_for(paper, "source.xml");
            match self
                .http
                .get(&url, "application/xml", &policy, ENV_BIORXIV_URL)
            {
                Ok(body) => {
                    let text = crate::jats::parse_jats(&body.body, "biorxiv:jatsxml")?;
                    return Ok(FullTextOutcome::Jats(text));
                }
                Err(PapersError::NotFound { .. }) => {
                    reasons.push("bioRxiv jatsxml link is 404".into())
                }
                Err(e) => return Err(e),
            }
        } else {
            reasons.push("bioRxiv lists no jatsxml link".into());
        }
        Ok(FullTextOutcome::PdfOnly {
            pdf_url: paper.pdf_url(),
            reason: reasons.join("; "),
        })
    }

    /// `jatsxml` links point at www.biorxiv.org; follow the configured web base instead.
    fn rebase_biorxiv(&self, link: &str) -> String {
        for default in [
            "https://www.biorxiv.org",
            "http://www.biorxiv.org",
            "https://biorxiv.org",
        ] {
            if let Some(rest) = link.strip_prefix(default) {
                return format!("{}{}", self.config().biorxiv_url, rest);
            }
        }
        link.to_string()
    }
}

fn cache_policy_for(paper: &Paper, kind: &'static str) -> CachePolicy {
    match paper.version {
        Some(version) => CachePolicy::Immutable {
            doi: paper.doi.clone(),
            version,
            kind,
        },
        None => CachePolicy::Listing,
    }
}

/// Accepts `10.1101/…`, `doi:10.1101/…` or a doi.org / biorxiv.org URL; strips a `vN` suffix.
pub fn normalize_doi(input: &str) -> Result<String> {
    let mut s = input.trim();
    for prefix in ["https://doi.org/", "http://doi.org/", "doi:", "DOI:"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest;
        }
    }
    if let Some(i) = s.find("/content/") {
        s = &s[i + "/content/".len()..];
    }
    let s = s.trim_end_matches(['/', '.']);
    let s = s
        .strip_suffix(".full")
        .or_else(|| s.strip_suffix(".full-text"))
        .unwrap_or(s);
    let s = strip_version(s).0;
    let valid = s.starts_with("10.")
        && s.contains('/')
        && !s.contains(char::is_whitespace)
        && !s.contains(['?', '#', '"']);
    if !valid {
        return Err(PapersError::InvalidInput(format!(
            "\"{input}\" is not a DOI; give one like 10.1101/2023.10.19.563100"
        )));
    }
    Ok(s.to_string())
}

/// Parses one bioRxiv API response; "no posts found" and friends become an empty page. `what`
/// is the URL. JSON of another shape is an error naming the field, never an empty page.
pub fn parse_api_page(body: &str, what: &str) -> Result<ApiPage> {
    let schema = |field: &str, problem: String| PapersError::Schema {
        what: what.to_string(),
        field: field.to_string(),
        problem,
        setting: ENV_BIORXIV_API_URL.to_string(),
    };
    let v: Value = serde_json::from_str(body).map_err(|e| PapersError::decode(what, e))?;
    let Value::Object(top) = &v else {
        return Err(schema(
            "the response",
            format!("is {} instead of a JSON object", kind_of(&v)),
        ));
    };
    let message = match top.get("messages") {
        None => return Err(schema("\"messages\"", "is missing".into())),
        Some(Value::Array(list)) => match list.first() {
            Some(m @ Value::Object(_)) => m,
            Some(other) => {
                return Err(schema(
                    "\"messages[0]\"",
                    format!("is {} instead of an object", kind_of(other)),
                ))
            }
            None => return Err(schema("\"messages\"", "is an empty list".into())),
        },
        Some(other) => {
            return Err(schema(
                "\"messages\"",
                format!("is {} instead of a list", kind_of(other)),
            ))
        }
    };
    let status = text(message, "status").unwrap_or_else(|| "ok".into());
    let lower = status.to_ascii_lowercase();
    let empty_status = lower.contains("no posts found")
        || lower.contains("no articles found")
        || lower.contains("not found");
    let collection = match top.get("collection") {
        Some(Value::Array(a)) => a.clone(),
        // Only a "nothing found" answer may leave the collection out.
        None | Some(Value::Null) if empty_status => Vec::new(),
        None => return Err(schema("\"collection\"", "is missing".into())),
        Some(other) => {
            return Err(schema(
                "\"collection\"",
                format!("is {} instead of a list", kind_of(other)),
            ))
        }
    };
    if let Some((i, row)) = collection.iter().enumerate().find(|(_, r)| !r.is_object()) {
        return Err(schema(
            &format!("\"collection[{i}]\""),
            format!("is {} instead of an object", kind_of(row)),
        ));
    }
    if lower != "ok" && !empty_status && collection.is_empty() {
        return Err(PapersError::decode(
            what,
            format!("api.biorxiv.org said \"{status}\""),
        ));
    }
    Ok(ApiPage {
        cursor: lenient_u64(message.get("cursor")),
        count: lenient_u64(message.get("count")),
        total: lenient_u64(message.get("total")),
        status,
        collection,
    })
}

/// `details` records as papers; a record without a DOI means the server speaks another format.
pub fn papers_from_details(rows: &[Value], what: &str) -> Result<Vec<Paper>> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let paper = paper_from_details(row);
            if paper.doi.is_empty() {
                return Err(PapersError::Schema {
                    what: what.to_string(),
                    field: format!("\"collection[{i}].doi\""),
                    problem: "is missing or empty".into(),
                    setting: ENV_BIORXIV_API_URL.to_string(),
                });
            }
            Ok(paper)
        })
        .collect()
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A `details` record as a [`Paper`].
pub fn paper_from_details(v: &Value) -> Paper {
    Paper {
        doi: text(v, "doi").unwrap_or_default(),
        version: text(v, "version").and_then(|s| s.trim_start_matches('v').parse().ok()),
        server: text(v, "server").map(|s| s.to_ascii_lowercase()),
        title: text(v, "title").map(|t| strip_tags(&t)).unwrap_or_default(),
        authors: text(v, "authors")
            .map(|a| {
                a.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        corresponding_author: text(v, "author_corresponding"),
        date: text(v, "date"),
        category: text(v, "category"),
        article_type: text(v, "type"),
        abstract_text: text(v, "abstract")
            .map(|t| strip_tags(&t))
            .unwrap_or_default(),
        license: text(v, "license"),
        published_doi: text(v, "published"),
        published_journal: None,
        jatsxml_url: text(v, "jatsxml"),
        europepmc_id: None,
        full_text: None,
    }
}

fn publication_from_pubs(v: &Value) -> Option<Publication> {
    Some(Publication {
        preprint_doi: text(v, "preprint_doi").or_else(|| text(v, "biorxiv_doi"))?,
        published_doi: text(v, "published_doi")?,
        published_journal: text(v, "published_journal"),
        published_date: text(v, "published_date"),
    })
}

/// The user's query restricted to bioRxiv/medRxiv preprints.
pub fn europepmc_preprint_query(query: &str) -> String {
    format!("({query}) AND SRC:PPR AND (PUBLISHER:\"bioRxiv\" OR PUBLISHER:\"medRxiv\")")
}

pub struct EuropePmcPage {
    pub hit_count: Option<u64>,
    pub next_cursor: Option<String>,
    pub papers: Vec<Paper>,
}

/// One Europe PMC `search` response (`resultType=core`); `what` is the URL. Only an answer that
/// says so (`resultList.result: []`, or `hitCount: 0`) is an empty page: JSON of another shape
/// is an error naming the field.
pub fn parse_europepmc_search(body: &str, what: &str) -> Result<EuropePmcPage> {
    let schema = |field: &str, problem: String| PapersError::Schema {
        what: what.to_string(),
        field: field.to_string(),
        problem,
        setting: ENV_EUROPEPMC_URL.to_string(),
    };
    let v: Value = serde_json::from_str(body).map_err(|e| PapersError::decode(what, e))?;
    let Value::Object(top) = &v else {
        return Err(schema(
            "the response",
            format!("is {} instead of a JSON object", kind_of(&v)),
        ));
    };
    let hit_count = match top.get("hitCount") {
        None | Some(Value::Null) => None,
        Some(h) => Some(lenient_u64(Some(h)).ok_or_else(|| {
            schema(
                "\"hitCount\"",
                format!("is {} instead of a count", kind_of(h)),
            )
        })?),
    };
    let says_empty = hit_count == Some(0);
    let results: &[Value] = match top.get("resultList") {
        Some(Value::Object(list)) => match list.get("result") {
            Some(Value::Array(a)) => a,
            None if says_empty => &[],
            None => return Err(schema("\"resultList.result\"", "is missing".into())),
            Some(other) => {
                return Err(schema(
                    "\"resultList.result\"",
                    format!("is {} instead of a list", kind_of(other)),
                ))
            }
        },
        None if says_empty => &[],
        None => return Err(schema("\"resultList\"", "is missing".into())),
        Some(other) => {
            return Err(schema(
                "\"resultList\"",
                format!("is {} instead of an object", kind_of(other)),
            ))
        }
    };
    if let Some((i, r)) = results.iter().enumerate().find(|(_, r)| !r.is_object()) {
        return Err(schema(
            &format!("\"resultList.result[{i}]\""),
            format!("is {} instead of an object", kind_of(r)),
        ));
    }
    let papers = results
        .iter()
        .filter_map(|r| {
            let doi = text(r, "doi")?;
            let authors = r
                .pointer("/authorList/author")
                .and_then(|a| a.as_array())
                .map(|list| {
                    list.iter()
                        .filter_map(|a| text(a, "fullName"))
                        .collect::<Vec<_>>()
                })
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| {
                    text(r, "authorString")
                        .map(|s| {
                            s.trim_end_matches('.')
                                .split(',')
                                .map(|a| a.trim().to_string())
                                .filter(|a| !a.is_empty())
                                .collect()
                        })
                        .unwrap_or_default()
                });
            let publisher = r
                .pointer("/bookOrReportDetails/publisher")
                .and_then(|p| p.as_str())
                .map(|p| p.to_ascii_lowercase());
            let (doi, version_in_doi) = {
                let (d, ver) = strip_version(&doi);
                (d.to_string(), ver)
            };
            Some(Paper {
                doi,
                version: version_in_doi
                    .or_else(|| text(r, "versionNumber").and_then(|s| s.parse().ok())),
                server: publisher.filter(|p| p == "biorxiv" || p == "medrxiv"),
                title: text(r, "title").map(|t| strip_tags(&t)).unwrap_or_default(),
                authors,
                date: text(r, "firstPublicationDate"),
                abstract_text: text(r, "abstractText")
                    .map(|t| strip_tags(&t))
                    .unwrap_or_default(),
                license: text(r, "license")
                    .map(|l| l.to_ascii_lowercase().replace([' ', '-'], "_")),
                europepmc_id: match (text(r, "source"), text(r, "id")) {
                    (Some(s), Some(i)) => Some(format!("{s}/{i}")),
                    _ => None,
                },
                ..Paper::default()
            })
        })
        .collect();
    Ok(EuropePmcPage {
        hit_count,
        next_cursor: text(&v, "nextCursorMark"),
        papers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dois_are_normalised() {
        assert_eq!(
            normalize_doi("https://doi.org/10.1101/2023.10.19.563100").unwrap(),
            "10.1101/2023.10.19.563100"
        );
        assert_eq!(
            normalize_doi("https://www.biorxiv.org/content/10.1101/2022.12.08.519590v3.full")
                .unwrap(),
            "10.1101/2022.12.08.519590"
        );
        assert_eq!(
            normalize_doi("10.64898/2026.01.02.100001v2").unwrap(),
            "10.64898/2026.01.02.100001"
        );
        assert!(normalize_doi("single cell").is_err());
    }

    #[test]
    fn no_posts_found_is_an_empty_page_and_other_statuses_are_errors() {
        let p = parse_api_page(
            r#"{"messages":[{"status":"no posts found"}],"collection":[]}"#,
            "t",
        )
        .unwrap();
        assert!(p.collection.is_empty());
        assert!(parse_api_page(
            r#"{"messages":[{"status":"invalid interval"}],"collection":[]}"#,
            "t"
        )
        .is_err());
        let p = parse_api_page(r#"{"messages":[{"status":"ok","cursor":"30","count":30,"total":"67"}],"collection":[]}"#, "t").unwrap();
        assert_eq!((p.cursor, p.count, p.total), (Some(30), Some(30), Some(67)));
    }
}
