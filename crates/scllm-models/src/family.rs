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
}

impl Family {
    pub const ALL: [Family; 2] = [Family::ScGpt, Family::Geneformer];

    /// The name in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::ScGpt => "scgpt",
            Family::Geneformer => "geneformer",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::ScGpt => "scGPT",
            Family::Geneformer => "Geneformer",
        })
    }
}
