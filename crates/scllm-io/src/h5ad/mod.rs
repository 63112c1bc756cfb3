//! AnnData `.h5ad` files: the on-disk encoding anndata ≥0.8 writes (`encoding-type` attributes), plus
//! the older layouts still found in the wild (anndata 0.6 structured-array `obs`/`var`/`obsm`,
//! `h5sparse`-style `raw.X`, categories in `uns['<col>_categories']`).
//!
//! `open` tells a bad file apart; `read` and `write` move a whole [`AnnData`] between memory and
//! disk; [`crate::backed`] reads and writes in blocks with the same parts.

pub mod guard;
pub(crate) mod handles;
pub(crate) mod open;
pub mod outline;
pub(crate) mod read;
pub(crate) mod read_primitives;
pub(crate) mod write;

pub use crate::anndata::{AnnData, Raw};
pub use outline::{outline, Outline};
pub use read::{read_h5ad, read_matrix};
pub use write::{write_h5ad, Compression};
