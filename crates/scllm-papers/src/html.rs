//! bioRxiv's HTML search page (the surface BioRxivist scraped). A small tag scanner is enough
//! for the two things read here, so no HTML5 parser is pulled into the build.

use crate::json_util::strip_tags;
use crate::paper::{strip_version, Paper};

pub struct SearchPage {
    pub papers: Vec<Paper>,
    /// `li.pager-next a` href, absent on the last page (BioRxivist crashed here).
    pub next_href: Option<String>,
}

struct Tag<'a> {
    name: String,
    attrs: Vec<(String, String)>,
    raw_end: usize,
    _src: &'a str,
}

impl Tag<'_> {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn has_class(&self, class: &str) -> bool {
        self.attr("class")
            .is_some_and(|c| c.split_whitespace().any(|x| x == class))
    }
}

/// Opening tags in document order (closing tags, comments and doctypes skipped).
fn opening_tags(html: &str) -> Vec<Tag<'_>> {
    let bytes = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        let start = i + off;
        let Some(end_off) = html[start..].find('>') else {
            break;
        };
        let end = start + end_off;
        i = end + 1;
        let inner = &html[start + 1..end];
        if inner.starts_with('/') || inner.starts_with('!') || inner.starts_with('?') {
            continue;
        }
        let name_end = inner
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(inner.len());
        let name = inner[..name_end].to_ascii_lowercase();
        if name.is_empty() || !bytes[start + 1].is_ascii_alphabetic() {
            continue;
        }
        out.push(Tag {
            name,
            attrs: parse_attrs(&inner[name_end..]),
            raw_end: end + 1,
            _src: html,
        });
    }
    out
}

fn parse_attrs(s: &str) -> Vec<(String, String)> {
    let mut attrs = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '/') {
            i += 1;
        }
        let key_start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' && chars[i] != '/' {
            i += 1;
        }
        let key: String = chars[key_start..i]
            .iter()
            .collect::<String>()
            .to_ascii_lowercase();
        if key.is_empty() {
            i += 1;
            continue;
        }
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
                let q = chars[i];
                i += 1;
                let vs = i;
                while i < chars.len() && chars[i] != q {
                    i += 1;
                }
                value = chars[vs..i].iter().collect();
                i += 1;
            } else {
                let vs = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                value = chars[vs..i].iter().collect();
            }
        }
        attrs.push((key, crate::json_util::decode_entities(&value)));
    }
    attrs
}

/// Reads result links (`a.highwire-cite-linked-title`) and the next-page link.
pub fn parse_search_page(html: &str) -> SearchPage {
    let tags = opening_tags(html);
    let mut papers = Vec::new();
    let mut next_href = None;
    for (idx, tag) in tags.iter().enumerate() {
        if tag.name == "a" && tag.has_class("highwire-cite-linked-title") {
            let Some(href) = tag.attr("href") else {
                continue;
            };
            let title_end = html[tag.raw_end..]
                .find("</a>")
                .map(|e| tag.raw_end + e)
                .unwrap_or(tag.raw_end);
            let title = strip_tags(&html[tag.raw_end..title_end]);
            let path = href.split("/content/").nth(1).unwrap_or(href);
            let path = path.split(['?', '#']).next().unwrap_or(path);
            let (doi, version) = strip_version(path.trim_end_matches(".full"));
            if !doi.starts_with("10.") {
                continue;
            }
            papers.push(Paper {
                doi: doi.to_string(),
                version,
                server: Some("biorxiv".into()),
                title,
                ..Paper::default()
            });
        }
        if next_href.is_none() && tag.name == "li" && tag.has_class("pager-next") {
            let li_end = html[tag.raw_end..]
                .find("</li>")
                .map(|e| tag.raw_end + e)
                .unwrap_or(html.len());
            next_href = tags[idx + 1..]
                .iter()
                .take_while(|t| t.raw_end <= li_end)
                .find(|t| t.name == "a")
                .and_then(|a| a.attr("href"))
                .map(str::to_string);
        }
    }
    SearchPage { papers, next_href }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_results_and_the_next_link() {
        let html = r#"<ul><li><a href="/content/10.1101/2022.12.08.519590v3" class="highwire-cite-linked-title"><span class="highwire-cite-title">A <b>bold</b> title</span></a></li></ul>
        <ul class="pager"><li class="pager-current first">1</li><li class="pager-next"><a href="/search/x%20numresults%3A75?page=1" class="link-icon">Next</a></li></ul>"#;
        let page = parse_search_page(html);
        assert_eq!(page.papers.len(), 1);
        assert_eq!(page.papers[0].doi, "10.1101/2022.12.08.519590");
        assert_eq!(page.papers[0].version, Some(3));
        assert_eq!(page.papers[0].title, "A bold title");
        assert_eq!(
            page.next_href.as_deref(),
            Some("/search/x%20numresults%3A75?page=1")
        );
        assert!(parse_search_page("<p>no pager</p>").next_href.is_none());
    }
}
