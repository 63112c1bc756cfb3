//! What an `.h5ad` holds besides `obs`/`var`, without reading any values: the size `X` would
//! take in memory, and the names and shapes of layers, obsm, raw and uns. For `inspect` of files
//! too large to read whole.

use std::path::Path;

use hdf5::{Group, LocationType};

use super::open::open_h5ad;
use super::read_primitives::{attr_shape, attr_string, encoding, kind_of, member_names};
use crate::error::{H5Context, Result};

/// A named part and its shape (`None` where the layout gives none cheaply).
pub type Part = (String, Option<(usize, usize)>);

/// The parts of a file, by name.
#[derive(Clone, Debug, Default)]
pub struct Outline {
    /// Bytes X's stored values take (a sparse X: data and indices); 0 without X.
    pub x_bytes: u64,
    /// X is stored by columns (CSC), which cannot be read in blocks of cells.
    pub x_by_columns: bool,
    /// Layers and obsm entries with their shapes.
    pub layers: Vec<Part>,
    pub obsm: Vec<Part>,
    /// The shape of `raw/X`, when the file has a `raw` group with one.
    pub raw: Option<(usize, usize)>,
    pub uns: Vec<String>,
}

fn shape_of(g: &Group, name: &str) -> Option<(usize, usize)> {
    match kind_of(g, name)? {
        LocationType::Dataset => {
            let s = g.dataset(name).ok()?.shape();
            match s[..] {
                [r, c] => Some((r, c)),
                [r] => Some((r, 1)),
                _ => None,
            }
        }
        LocationType::Group => {
            let m = g.group(name).ok()?;
            attr_shape(&m, "shape").or_else(|| attr_shape(&m, "h5sparse_shape"))
        }
        _ => None,
    }
}

fn entries(path: &Path, root: &Group, group: &str) -> Result<Vec<Part>> {
    match kind_of(root, group) {
        Some(LocationType::Group) => {
            let g = root.group(group).at(path, group)?;
            Ok(member_names(&g)
                .at(path, group)?
                .into_iter()
                .map(|m| {
                    let s = shape_of(&g, &m);
                    (m, s)
                })
                .collect())
        }
        _ => Ok(Vec::new()),
    }
}

/// The outline of the `.h5ad` at `path` (under the same watchdog as a whole read).
pub fn outline(path: impl AsRef<Path>) -> Result<Outline> {
    let path = path.as_ref();
    super::guard::reading(path);
    super::guard::structure(|| outline_guarded(path))
}

fn outline_guarded(path: &Path) -> Result<Outline> {
    let file = open_h5ad(path)?;
    let root: &Group = &file;
    let x_bytes = match kind_of(root, "X") {
        Some(LocationType::Dataset) => {
            // what X claims, not checked here: the reader that follows names the problem
            let ds = root.dataset("X").at(path, "X")?;
            ds.size() as u64 * ds.dtype().at(path, "X")?.size() as u64
        }
        Some(LocationType::Group) => {
            let g = root.group("X").at(path, "X")?;
            let mut b = 0u64;
            for part in ["data", "indices"] {
                if let Ok(ds) = g.dataset(part) {
                    b += ds.size() as u64 * ds.dtype().at(path, "X")?.size() as u64;
                }
            }
            b
        }
        _ => 0,
    };
    let x_by_columns = matches!(kind_of(root, "X"), Some(LocationType::Group))
        && root.group("X").ok().is_some_and(|g| {
            encoding(&g).as_deref() == Some("csc_matrix")
                || attr_string(&g, "h5sparse_format").as_deref() == Some("csc")
        });
    let uns = match kind_of(root, "uns") {
        Some(LocationType::Group) => {
            member_names(&root.group("uns").at(path, "uns")?).at(path, "uns")?
        }
        _ => Vec::new(),
    };
    Ok(Outline {
        x_bytes,
        x_by_columns,
        layers: entries(path, root, "layers")?,
        obsm: entries(path, root, "obsm")?,
        raw: match kind_of(root, "raw") {
            Some(LocationType::Group) => shape_of(&root.group("raw").at(path, "raw")?, "X"),
            _ => None,
        },
        uns,
    })
}
