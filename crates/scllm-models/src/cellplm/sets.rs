//! Which cells attend to each other (docs/models/cellplm.md §2, §4.1): each group of an `obs`
//! column (the reference's `obs['batch']`) is one attention set; without the column all cells
//! are one set; a batch size cuts each group into sets of at most that many consecutive cells
//! (input order within the group), never mixing groups. A cell's embedding depends on its set by
//! design.

use std::collections::BTreeMap;
use std::path::Path;

use scllm_io::{DataFrame, UnsValue};

use crate::error::{ModelError, Result};

/// The `obs` column the reference groups by.
pub const DEFAULT_GROUP_COLUMN: &str = "batch";

/// How cells are grouped into attention sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum GroupBy {
    /// `obs['batch']` when the file has it, else all cells one set (the reference's rule).
    #[default]
    Default,
    /// The groups of this `obs` column (it must exist).
    Column(String),
    /// All cells one set.
    AllCells,
}

impl GroupBy {
    /// The `--group-by` flag's value: absent → [`GroupBy::Default`], `none` → all cells one
    /// set, else the column.
    pub fn from_flag(flag: Option<&str>) -> Self {
        match flag {
            None => GroupBy::Default,
            Some("none") => GroupBy::AllCells,
            Some(c) => GroupBy::Column(c.to_string()),
        }
    }
}

/// Grouping options.
#[derive(Clone, Debug, Default)]
pub struct SetOptions {
    pub group_by: GroupBy,
    /// Cut each group into sets of at most this many consecutive cells (`None` or 0: whole
    /// groups, the reference's default).
    pub batch_size: Option<usize>,
}

/// The attention sets of a file: each set's rows (input order within a set).
#[derive(Clone, Debug, PartialEq)]
pub struct Sets {
    pub sets: Vec<Vec<usize>>,
    /// The column grouped by (`None`: all cells one group).
    pub column: Option<String>,
    pub batch_size: Option<usize>,
    pub n_groups: usize,
}

impl Sets {
    /// The sets of `n` cells whose `obs` is `obs`, as `opts` says.
    pub fn build(obs: &DataFrame, n: usize, opts: &SetOptions, file: &Path) -> Result<Sets> {
        let column = match &opts.group_by {
            GroupBy::AllCells => None,
            GroupBy::Column(c) => {
                if obs.column(c).is_none() {
                    return Err(ModelError::file(
                        file,
                        format!(
                            "obs has no column `{c}` to group cells into attention sets by \
                             (columns: {})",
                            obs.column_names().join(", ")
                        ),
                    ));
                }
                Some(c.clone())
            }
            GroupBy::Default => obs
                .column(DEFAULT_GROUP_COLUMN)
                .map(|_| DEFAULT_GROUP_COLUMN.to_string()),
        };
        // groups in sorted label order (the reference's LabelEncoder), rows in input order
        let groups: Vec<Vec<usize>> = match &column {
            None => vec![(0..n).collect()],
            Some(c) => {
                let labels = obs.column(c).expect("checked above").to_strings();
                let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
                for (i, l) in labels.into_iter().enumerate() {
                    let l = l.ok_or_else(|| {
                        ModelError::file(
                            file,
                            format!(
                                "obs['{c}'] is missing at row {i}: every cell needs a group \
                                 (fill it, or group by another column with --group-by)"
                            ),
                        )
                    })?;
                    by.entry(l).or_default().push(i);
                }
                by.into_values().collect()
            }
        };
        let size = opts.batch_size.filter(|&b| b > 0);
        let n_groups = groups.iter().filter(|g| !g.is_empty()).count();
        let sets = groups
            .into_iter()
            .filter(|g| !g.is_empty())
            .flat_map(|g| match size {
                Some(b) => g.chunks(b).map(<[usize]>::to_vec).collect::<Vec<_>>(),
                None => vec![g],
            })
            .collect();
        Ok(Sets {
            sets,
            column,
            batch_size: size,
            n_groups,
        })
    }

    /// One line for the log.
    pub fn describe(&self) -> String {
        let by = match &self.column {
            Some(c) => format!("obs['{c}'] ({} groups)", self.n_groups),
            None => "all cells one group".to_string(),
        };
        match self.batch_size {
            Some(b) => format!(
                "{} attention sets: {by}, cut into sets of at most {b} cells",
                self.sets.len()
            ),
            None => format!("{} attention sets: {by}, whole groups", self.sets.len()),
        }
    }

    /// What the output's `uns` records about the grouping.
    pub fn to_uns(&self) -> UnsValue {
        UnsValue::Dict(vec![
            (
                "group_by".into(),
                UnsValue::Str(self.column.clone().unwrap_or_else(|| "none".into())),
            ),
            (
                "batch_size".into(),
                UnsValue::I64(self.batch_size.map_or(0, |b| b as i64)),
            ),
            ("n_groups".into(), UnsValue::I64(self.n_groups as i64)),
            ("n_sets".into(), UnsValue::I64(self.sets.len() as i64)),
        ])
    }
}
