//! The paper model shared by every source, the chunker and the graph.

use serde::{Deserialize, Serialize};

/// One preprint version and what is known about it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Paper {
    pub doi: String,
    /// bioRxiv version number (`v2` → 2); `None` when the source did not say.
    pub version: Option<u32>,
    /// `biorxiv` or `medrxiv`.
    pub server: Option<String>,
    pub title: String,
    pub authors: Vec<String>,
    pub corresponding_author: Option<String>,
    /// Posting date, `YYYY-MM-DD`.
    pub date: Option<String>,
    pub category: Option<String>,
    /// "new results", "confirmatory results", …
    pub article_type: Option<String>,
    #[serde(rename = "abstract")]
    pub abstract_text: String,
    /// bioRxiv licence code (`cc_by`, `cc_no`, …); reuse of each article follows it.
    pub license: Option<String>,
    pub published_doi: Option<String>,
    pub published_journal: Option<String>,
    /// bioRxiv's per-version JATS XML link.
    pub jatsxml_url: Option<String>,
    /// Europe PMC `source/id`, e.g. `PPR/PPR123456`.
    pub europepmc_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_text: Option<FullText>,
}

impl Paper {
    /// Stable graph id: `<doi>v<version>`, or the bare DOI when the version is unknown.
    pub fn key(&self) -> String {
        match self.version {
            Some(v) => format!("{}v{}", self.doi, v),
            None => self.doi.clone(),
        }
    }

    /// Link back to the preprint, as bioRxiv's terms ask instead of re-hosting text.
    pub fn url(&self) -> String {
        let host = match self.server.as_deref() {
            Some("medrxiv") => "https://www.medrxiv.org",
            _ => "https://www.biorxiv.org",
        };
        match self.version {
            Some(v) => format!("{host}/content/{}v{}", self.doi, v),
            None => format!("https://doi.org/{}", self.doi),
        }
    }

    /// Where the PDF of this version lives.
    pub fn pdf_url(&self) -> String {
        match self.version {
            Some(_) => format!("{}.full.pdf", self.url()),
            None => format!("https://doi.org/{}", self.doi),
        }
    }

    /// Fills fields this record lacks from another record of the same paper.
    pub fn merge_missing(&mut self, other: &Paper) {
        fn fill<T: Clone>(a: &mut Option<T>, b: &Option<T>) {
            if a.is_none() {
                a.clone_from(b);
            }
        }
        fill(&mut self.version, &other.version);
        fill(&mut self.server, &other.server);
        fill(&mut self.corresponding_author, &other.corresponding_author);
        fill(&mut self.date, &other.date);
        fill(&mut self.category, &other.category);
        fill(&mut self.article_type, &other.article_type);
        fill(&mut self.license, &other.license);
        fill(&mut self.published_doi, &other.published_doi);
        fill(&mut self.published_journal, &other.published_journal);
        fill(&mut self.jatsxml_url, &other.jatsxml_url);
        fill(&mut self.europepmc_id, &other.europepmc_id);
        if self.title.is_empty() {
            self.title.clone_from(&other.title);
        }
        if self.authors.is_empty() {
            self.authors.clone_from(&other.authors);
        }
        if self.abstract_text.is_empty() {
            self.abstract_text.clone_from(&other.abstract_text);
        }
    }
}

/// Structured full text: sections, captions, tables and references kept apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FullText {
    /// Where it came from, e.g. `europepmc:PPR/PPR123` or `biorxiv:jatsxml`.
    pub source: String,
    pub sections: Vec<Section>,
    pub figures: Vec<Caption>,
    pub tables: Vec<Table>,
    pub references: Vec<Reference>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// Heading path, e.g. `Results > Benchmark`.
    pub heading: String,
    /// 1 for a top-level section.
    pub level: u32,
    pub paragraphs: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Caption {
    pub id: String,
    pub label: String,
    pub caption: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub id: String,
    pub label: String,
    pub caption: String,
    /// Header rows first (from `<thead>`), then body rows; cells as plain text.
    pub header_rows: usize,
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub id: String,
    pub label: String,
    pub text: String,
    pub doi: Option<String>,
}

/// What `full_text` found for a paper.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FullTextOutcome {
    Jats(FullText),
    /// No JATS anywhere we may look: the PDF is the only full text.
    PdfOnly {
        pdf_url: String,
        reason: String,
    },
}

/// `10.1101/2022.12.08.519590v3` → (`10.1101/2022.12.08.519590`, Some(3)).
pub fn strip_version(s: &str) -> (&str, Option<u32>) {
    if let Some(i) = s.rfind('v') {
        let (head, tail) = (&s[..i], &s[i + 1..]);
        if !tail.is_empty()
            && tail.bytes().all(|b| b.is_ascii_digit())
            && head.ends_with(|c: char| c.is_ascii_digit())
        {
            return (head, tail.parse().ok());
        }
    }
    (s, None)
}
