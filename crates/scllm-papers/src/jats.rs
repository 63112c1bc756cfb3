//! JATS XML → [`FullText`]: sections with their heading path, figure and table captions,
//! table cells, and references, each kept apart (BioRxivist flattened all of it into `<p>` text).

use std::collections::HashMap;

use roxmltree::{Document, Node, ParsingOptions};

use crate::error::{PapersError, Result};
use crate::http::MAX_BODY_BYTES;
use crate::json_util::squash_ws;
use crate::paper::{Caption, FullText, Reference, Section, Table};

/// Elements whose text belongs elsewhere (captions, tables) or nowhere (formulas as MathML).
const SKIP_IN_PARAGRAPHS: &[&str] = &[
    "fig",
    "table-wrap",
    "disp-formula",
    "supplementary-material",
    "fn-group",
];

/// Most text a document's own entity declarations may expand to. roxmltree caps references per
/// reference (255) but not their number, so a 100 KB document can inflate to gigabytes.
pub const MAX_ENTITY_EXPANSION: u64 = MAX_BODY_BYTES;

/// Most XML nodes in one document: a long paper with large tables has a few hundred thousand;
/// the cap keeps a body of millions of tiny elements from taking gigabytes as a tree.
pub const MAX_NODES: u32 = 2_000_000;

pub fn parse_jats(xml: &str, source: &str) -> Result<FullText> {
    let what = || format!("JATS from {source}");
    let expanded = entity_expansion(xml);
    if expanded > MAX_ENTITY_EXPANSION {
        return Err(PapersError::decode(
            what(),
            format!(
                "its DTD entities would expand to more than {} MiB of text (an entity bomb); refusing to parse it",
                MAX_ENTITY_EXPANSION >> 20
            ),
        ));
    }
    let options = || ParsingOptions {
        allow_dtd: true,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    let replaced;
    let doc = match Document::parse_with_options(xml, options()) {
        Ok(d) => d,
        Err(roxmltree::Error::UnknownEntityReference(..)) => {
            // Publishers' JATS sometimes uses HTML entities (&nbsp;) their DTD would define.
            replaced = replace_html_entities(xml);
            Document::parse_with_options(&replaced, options())
                .map_err(|e| PapersError::decode(what(), e))?
        }
        Err(e) => return Err(PapersError::decode(what(), e)),
    };
    let root = doc.root_element();
    if root.tag_name().name() != "article" {
        return Err(PapersError::decode(
            format!("JATS from {source}"),
            format!(
                "root element is <{}>, not <article>",
                root.tag_name().name()
            ),
        ));
    }
    let mut text = FullText {
        source: source.to_string(),
        ..FullText::default()
    };
    if let Some(body) = child(root, "body") {
        collect_sections(body, "", 0, &mut text.sections, "Body");
    }
    if let Some(back) = child(root, "back") {
        for node in back.children().filter(Node::is_element) {
            match node.tag_name().name() {
                // Data-availability and acknowledgement sections name accessions and funders.
                "sec" => collect_sections(node, "", 0, &mut text.sections, "Back matter"),
                "ack" => collect_sections(node, "", 0, &mut text.sections, "Acknowledgements"),
                _ => {}
            }
        }
    }
    for node in root.descendants().filter(Node::is_element) {
        match node.tag_name().name() {
            "fig" => text.figures.push(Caption {
                id: node.attribute("id").unwrap_or_default().to_string(),
                label: child_text(node, "label"),
                caption: child(node, "caption")
                    .map(|c| inner_text(c, &[]))
                    .unwrap_or_default(),
            }),
            "table-wrap" => text.tables.push(parse_table(node)),
            "ref" => text.references.push(parse_reference(node)),
            _ => {}
        }
    }
    Ok(text)
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn child_text(node: Node, name: &str) -> String {
    child(node, name)
        .map(|c| inner_text(c, &[]))
        .unwrap_or_default()
}

/// Text of a subtree with whitespace squashed, skipping the named elements.
fn inner_text(node: Node, skip: &[&str]) -> String {
    let mut out = String::new();
    push_text(node, skip, &mut out);
    squash_ws(&out)
}

fn push_text(node: Node, skip: &[&str], out: &mut String) {
    for c in node.children() {
        if c.is_text() {
            out.push_str(c.text().unwrap_or_default());
        } else if c.is_element() {
            let name = c.tag_name().name();
            if skip.contains(&name) {
                continue;
            }
            // Keep block boundaries from gluing words together.
            let block = matches!(name, "p" | "title" | "list-item" | "td" | "th" | "label");
            if block {
                out.push(' ');
            }
            push_text(c, skip, out);
            if block {
                out.push(' ');
            }
        }
    }
}

fn collect_sections(node: Node, parent: &str, level: u32, out: &mut Vec<Section>, fallback: &str) {
    let title = child_text(node, "title");
    // The <body> itself (or an untitled wrapper) names no section of its own for its children.
    let container = level == 0 && title.is_empty();
    let heading = match (parent.is_empty(), title.is_empty()) {
        (true, true) => fallback.to_string(),
        (true, false) => title,
        (false, true) => parent.to_string(),
        (false, false) => format!("{parent} > {title}"),
    };
    let mut paragraphs = Vec::new();
    for c in node.children().filter(Node::is_element) {
        match c.tag_name().name() {
            "p" | "list" | "boxed-text" | "statement" => {
                let t = inner_text(c, SKIP_IN_PARAGRAPHS);
                if !t.is_empty() {
                    paragraphs.push(t);
                }
            }
            _ => {}
        }
    }
    if !paragraphs.is_empty() {
        out.push(Section {
            heading: heading.clone(),
            level: level.max(1),
            paragraphs,
        });
    }
    for c in node
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "sec")
    {
        let parent = if container { "" } else { heading.as_str() };
        collect_sections(c, parent, level + 1, out, fallback);
    }
}

fn parse_table(node: Node) -> Table {
    let mut rows = Vec::new();
    let mut header_rows = 0;
    for tr in node
        .descendants()
        .filter(|d| d.is_element() && d.tag_name().name() == "tr")
    {
        let in_head = tr
            .ancestors()
            .any(|a| a.is_element() && a.tag_name().name() == "thead");
        let cells: Vec<String> = tr
            .children()
            .filter(|c| c.is_element() && matches!(c.tag_name().name(), "td" | "th"))
            .map(|c| inner_text(c, &[]))
            .collect();
        let all_th = tr
            .children()
            .filter(Node::is_element)
            .all(|c| c.tag_name().name() == "th");
        if in_head || (rows.len() == header_rows && all_th && !cells.is_empty()) {
            header_rows += 1;
        }
        rows.push(cells);
    }
    Table {
        id: node.attribute("id").unwrap_or_default().to_string(),
        label: child_text(node, "label"),
        caption: child(node, "caption")
            .map(|c| inner_text(c, &[]))
            .unwrap_or_default(),
        header_rows,
        rows,
    }
}

fn parse_reference(node: Node) -> Reference {
    let citation = node.children().find(|c| {
        c.is_element()
            && matches!(
                c.tag_name().name(),
                "mixed-citation" | "element-citation" | "citation"
            )
    });
    let doi = node
        .descendants()
        .find(|d| {
            d.is_element()
                && d.tag_name().name() == "pub-id"
                && d.attribute("pub-id-type") == Some("doi")
        })
        .map(|d| inner_text(d, &[]));
    Reference {
        id: node.attribute("id").unwrap_or_default().to_string(),
        label: child_text(node, "label"),
        text: citation.map(|c| inner_text(c, &[])).unwrap_or_default(),
        doi,
    }
}

/// An upper bound on the text that references to the document's own general entities
/// (`<!ENTITY name "value">`) expand to. Declarations are found anywhere in the text, which can
/// only over-count.
fn entity_expansion(xml: &str) -> u64 {
    if !xml.contains("<!ENTITY") {
        return 0;
    }
    let mut decls: HashMap<&str, &str> = HashMap::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<!ENTITY") {
        rest = &rest[i + "<!ENTITY".len()..];
        let decl = rest.trim_start();
        if decl.starts_with('%') {
            continue; // parameter entities only shape the DTD
        }
        let name_end = decl
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '>')
            .unwrap_or(decl.len());
        let (name, tail) = decl.split_at(name_end);
        let tail = tail.trim_start();
        let Some(quote) = tail.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue; // SYSTEM/PUBLIC: external, never fetched
        };
        let value = &tail[1..];
        let value = &value[..value.find(quote).unwrap_or(value.len())];
        decls.entry(name).or_insert(value);
    }
    let mut memo: HashMap<&str, u64> = HashMap::new();
    let mut total = 0u64;
    for name in references(xml) {
        total = total.saturating_add(expanded_len(name, &decls, &mut memo, 0));
    }
    total
}

/// Names of the `&name;` references in `text` (character references excluded).
fn references(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices('&').filter_map(move |(i, _)| {
        let tail = &text[i + 1..];
        let end = tail.find(';')?;
        let name = &tail[..end];
        let plain = !name.is_empty()
            && !name.starts_with('#')
            && !name.contains(|c: char| c.is_whitespace() || c == '&' || c == '<');
        plain.then_some(name)
    })
}

fn expanded_len<'a>(
    name: &'a str,
    decls: &HashMap<&'a str, &'a str>,
    memo: &mut HashMap<&'a str, u64>,
    depth: u32,
) -> u64 {
    let Some(value) = decls.get(name) else {
        return name.len() as u64 + 2;
    };
    if let Some(&n) = memo.get(name) {
        return n;
    }
    // roxmltree rejects nesting past 10 as a loop; stop counting there.
    if depth > 12 {
        return value.len() as u64;
    }
    let mut n = value.len() as u64;
    for inner in references(value) {
        n = n.saturating_add(expanded_len(inner, decls, memo, depth + 1));
    }
    memo.insert(name, n);
    n
}

fn replace_html_entities(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail.find(';').filter(|&e| e > 1 && e <= 10);
        match end {
            Some(e) if tail[1..e].bytes().all(|b| b.is_ascii_alphanumeric()) => {
                let name = &tail[1..e];
                let replacement = match name {
                    "amp" | "lt" | "gt" | "quot" | "apos" => None,
                    "nbsp" => Some("&#160;"),
                    "ndash" => Some("&#8211;"),
                    "mdash" => Some("&#8212;"),
                    "hellip" => Some("&#8230;"),
                    "times" => Some("&#215;"),
                    "plusmn" => Some("&#177;"),
                    "deg" => Some("&#176;"),
                    "micro" => Some("&#181;"),
                    "alpha" => Some("&#945;"),
                    "beta" => Some("&#946;"),
                    "gamma" => Some("&#947;"),
                    _ => Some(" "),
                };
                match replacement {
                    Some(r) => out.push_str(r),
                    None => out.push_str(&tail[..=e]),
                }
                rest = &tail[e + 1..];
            }
            _ => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_entities_do_not_break_parsing() {
        let xml = r#"<article><body><sec><title>Intro</title><p>T&nbsp;cells &amp; B&ndash;cells</p></sec></body></article>"#;
        let t = parse_jats(xml, "test").unwrap();
        assert_eq!(t.sections[0].paragraphs[0], "T cells & B–cells");
    }

    #[test]
    fn an_entity_bomb_is_refused_before_parsing() {
        // 100 KB that roxmltree would inflate to 500 MB (its per-reference cap is 255).
        let a = "x".repeat(100_000);
        let b = "&a;".repeat(250);
        let refs = "&b;".repeat(20);
        let xml = format!(
            "<!DOCTYPE article [<!ENTITY a \"{a}\"><!ENTITY b '{b}'>]><article><body><p>{refs}</p></body></article>"
        );
        let started = std::time::Instant::now();
        let err = parse_jats(&xml, "test").unwrap_err();
        assert!(err.to_string().contains("entity bomb"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Modest use of declared entities still parses.
        let xml = "<!DOCTYPE article [<!ENTITY sc \"single-cell\">]><article><body><p>&sc; &sc; data</p></body></article>";
        let t = parse_jats(xml, "test").unwrap();
        assert_eq!(t.sections[0].paragraphs[0], "single-cell single-cell data");
    }

    #[test]
    fn non_article_root_is_an_error() {
        assert!(parse_jats("<html><body/></html>", "test").is_err());
    }
}
