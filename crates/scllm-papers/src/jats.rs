//! JATS XML → [`FullText`]: sections with their heading path, figure and table captions,
//! table cells, and references, each kept apart (BioRxivist flattened all of it into `<p>` text).

use roxmltree::{Document, Node, ParsingOptions};

use crate::error::{PapersError, Result};
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

pub fn parse_jats(xml: &str, source: &str) -> Result<FullText> {
    let options = || ParsingOptions {
        allow_dtd: true,
        ..ParsingOptions::default()
    };
    let replaced;
    let doc = match Document::parse_with_options(xml, options()) {
        Ok(d) => d,
        Err(roxmltree::Error::UnknownEntityReference(..)) => {
            // Publishers' JATS sometimes uses HTML entities (&nbsp;) their DTD would define.
            replaced = replace_html_entities(xml);
            Document::parse_with_options(&replaced, options())
                .map_err(|e| PapersError::decode(format!("JATS from {source}"), e))?
        }
        Err(e) => return Err(PapersError::decode(format!("JATS from {source}"), e)),
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
    fn non_article_root_is_an_error() {
        assert!(parse_jats("<html><body/></html>", "test").is_err());
    }
}
