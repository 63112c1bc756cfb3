//! Section-aware chunks for LLM retrieval, with ids that are stable across re-ingestion
//! (`<doi>v<version>#<section>#<n>`), unlike BioRxivist's random ids that duplicated vectors.

use std::collections::HashMap;

use serde::Serialize;

use crate::paper::Paper;

pub const DEFAULT_MAX_CHARS: usize = 1500;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkKind {
    Abstract,
    Body,
    Figure,
    Table,
}

impl ChunkKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ChunkKind::Abstract => "abstract",
            ChunkKind::Body => "body",
            ChunkKind::Figure => "figure",
            ChunkKind::Table => "table",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chunk {
    pub id: String,
    /// The paper's graph id (`<doi>v<version>`).
    pub paper_id: String,
    pub doi: String,
    pub version: Option<u32>,
    pub title: String,
    pub section: String,
    pub kind: ChunkKind,
    /// Position within the paper, from 0.
    pub ordinal: usize,
    pub text: String,
    pub url: String,
    pub license: Option<String>,
    /// Index into `full_text.tables` for table chunks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_index: Option<usize>,
}

/// Splits a paper into chunks of at most `max_chars` characters (a paragraph is never merged
/// past the limit, and an over-long paragraph is split at sentence, then word boundaries).
pub fn chunk_paper(paper: &Paper, max_chars: usize) -> Vec<Chunk> {
    let max_chars = max_chars.max(200);
    let key = paper.key();
    let mut out: Vec<Chunk> = Vec::new();
    let mut per_slug: HashMap<String, usize> = HashMap::new();
    let mut push = |section: &str, kind: ChunkKind, text: String, table_index: Option<usize>| {
        let slug = slug(section);
        let n = per_slug.entry(slug.clone()).or_default();
        let id = format!("{key}#{slug}#{n}");
        *n += 1;
        let ordinal = out.len();
        out.push(Chunk {
            id,
            paper_id: key.clone(),
            doi: paper.doi.clone(),
            version: paper.version,
            title: paper.title.clone(),
            section: section.to_string(),
            kind,
            ordinal,
            text,
            url: paper.url(),
            license: paper.license.clone(),
            table_index,
        });
    };
    if !paper.abstract_text.trim().is_empty() {
        for text in pack(&[paper.abstract_text.trim().to_string()], max_chars) {
            push("Abstract", ChunkKind::Abstract, text, None);
        }
    }
    if let Some(ft) = &paper.full_text {
        for section in &ft.sections {
            for text in pack(&section.paragraphs, max_chars) {
                push(&section.heading, ChunkKind::Body, text, None);
            }
        }
        for fig in &ft.figures {
            let name = if fig.label.is_empty() {
                &fig.id
            } else {
                &fig.label
            };
            let text = format!("{name}. {}", fig.caption).trim().to_string();
            for t in pack(&[text], max_chars) {
                push(name, ChunkKind::Figure, t, None);
            }
        }
        for (i, table) in ft.tables.iter().enumerate() {
            let name = if table.label.is_empty() {
                &table.id
            } else {
                &table.label
            };
            let mut text = format!("{name}. {}", table.caption);
            for row in &table.rows {
                text.push('\n');
                text.push_str(&row.join(" | "));
            }
            for t in pack(&[text], max_chars) {
                push(name, ChunkKind::Table, t, Some(i));
            }
        }
    }
    out
}

/// Lowercase ASCII slug, at most 48 characters.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out: String = out.trim_end_matches('-').chars().take(48).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "section".into()
    } else {
        out
    }
}

/// Greedy packing of paragraphs into chunks joined by blank lines.
fn pack(paragraphs: &[String], max_chars: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    for p in paragraphs {
        if p.chars().count() <= max_chars {
            pieces.push(p.clone());
        } else {
            pieces.extend(split_long(p, max_chars));
        }
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    for piece in pieces {
        let needed = cur.chars().count() + 2 + piece.chars().count();
        if !cur.is_empty() && needed > max_chars {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push_str("\n\n");
        }
        cur.push_str(&piece);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn split_long(text: &str, max_chars: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for sentence in sentences(text) {
        for part in split_words(sentence, max_chars) {
            if !cur.is_empty() && cur.chars().count() + 1 + part.chars().count() > max_chars {
                out.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(&part);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices(". ") {
        // "e.g. " and "Fig. 2" are not sentence ends; a capital letter after the space is.
        if bytes.get(i + 2).is_some_and(|b| b.is_ascii_uppercase()) {
            out.push(text[start..=i].trim());
            start = i + 2;
        }
    }
    out.push(text[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

fn split_words(sentence: &str, max_chars: usize) -> Vec<String> {
    if sentence.chars().count() <= max_chars {
        return vec![sentence.to_string()];
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in sentence.split_whitespace() {
        let word: String = if word.chars().count() > max_chars {
            // A token longer than a chunk (a sequence, a URL): cut it.
            for piece in word.chars().collect::<Vec<_>>().chunks(max_chars) {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(piece.iter().collect());
            }
            continue;
        } else {
            word.to_string()
        };
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > max_chars {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&word);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paper::{FullText, Section};

    fn paper() -> Paper {
        Paper {
            doi: "10.1101/2024.01.01.000001".into(),
            version: Some(2),
            title: "T".into(),
            abstract_text: "Short abstract.".into(),
            full_text: Some(FullText {
                sections: vec![Section {
                    heading: "Results > Benchmark".into(),
                    level: 2,
                    paragraphs: vec!["Alpha sentence here. ".repeat(200), "Tail.".into()],
                }],
                ..FullText::default()
            }),
            ..Paper::default()
        }
    }

    #[test]
    fn chunks_respect_the_limit_and_have_stable_ids() {
        let a = chunk_paper(&paper(), 500);
        let b = chunk_paper(&paper(), 500);
        assert_eq!(a, b);
        assert!(
            a.iter().all(|c| c.text.chars().count() <= 500),
            "no oversized chunk"
        );
        assert_eq!(a[0].id, "10.1101/2024.01.01.000001v2#abstract#0");
        assert_eq!(a[1].id, "10.1101/2024.01.01.000001v2#results-benchmark#0");
        assert!(a.len() > 8);
    }
}
