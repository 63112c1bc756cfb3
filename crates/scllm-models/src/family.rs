//! The model families scllm runs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A single-cell foundation-model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// scGPT (gene token + binned value, `<cls>`): docs/models/scgpt.md.
    ScGpt,
    /// Geneformer (rank-value tokens, BERT): docs/models/geneformer.md.
    Geneformer,
    /// scBERT (binned expression by panel position, Performer): docs/models/scbert.md.
    ScBert,
    /// CellPLM (cells as tokens, Flow-Attention over the cells of a sample): docs/models/cellplm.md.
    CellPlm,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Family::ScGpt,
        Family::Geneformer,
        Family::ScBert,
        Family::CellPlm,
    ];

    /// The name in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::ScGpt => "scgpt",
            Family::Geneformer => "geneformer",
            Family::ScBert => "scbert",
            Family::CellPlm => "cellplm",
        }
    }

    /// Whether the family's models can host `strategy` (scBERT and CellPLM have no place for
    /// prefix prompt tokens: docs/models/scbert.md §4, docs/models/cellplm.md §7.6).
    pub fn supports(self, strategy: crate::peft::Strategy) -> bool {
        !matches!(
            (self, strategy),
            (
                Family::ScBert | Family::CellPlm,
                crate::peft::Strategy::Prefix
            )
        )
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::ScGpt => "scGPT",
            Family::Geneformer => "Geneformer",
            Family::ScBert => "scBERT",
            Family::CellPlm => "CellPLM",
        })
    }
}
