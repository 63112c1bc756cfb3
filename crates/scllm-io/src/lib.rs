//! Reading and writing single-cell data: AnnData `.h5ad` (in memory or in row blocks), 10x
//! `matrix.mtx` folders and CSV tables.

pub mod anndata;
pub mod backed;
pub mod error;
pub mod frame;
pub mod h5ad;
pub mod matrix;
pub mod terminal;
pub mod text;

pub use backed::BackedAnnData;
pub use error::{IoError, Result};
pub use frame::{Column, DataFrame, UnsValue};
pub use h5ad::{read_h5ad, write_h5ad, AnnData, Compression, Raw};
pub use matrix::{Compressed, Matrix, Values};
pub use terminal::printable;
pub use text::{is_h5ad_path, read_10x_dir, read_any, read_csv};
