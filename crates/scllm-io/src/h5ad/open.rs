//! Opening a file as `.h5ad`, telling apart "missing", "not HDF5" and "not AnnData" so the
//! message says which.

use std::path::Path;

use hdf5::File;

use crate::error::{H5Context, IoError, Result};

const HDF5_SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Open an HDF5 file for reading, telling apart "missing", "not HDF5" and "not AnnData".
pub(crate) fn open_h5ad(path: &Path) -> Result<File> {
    let meta = std::fs::metadata(path).map_err(|e| IoError::os(path, e))?;
    if meta.is_dir() {
        return Err(IoError::file(
            path,
            "is a directory, where this command reads an .h5ad file. Convert a 10x folder (matrix.mtx + features.tsv + barcodes.tsv) once with `scllm preprocess FOLDER -o FILE.h5ad`",
        ));
    }
    if !has_hdf5_signature(path)? {
        let hint = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") | Some("tsv") | Some("txt") => "It looks like a text table: `scllm inspect` and `scllm preprocess` read a .csv (cells as rows) directly; convert it once with `scllm preprocess FILE.csv -o FILE.h5ad` for the other commands.",
            Some("mtx") | Some("gz") => "For 10x output, name the folder holding matrix.mtx(.gz), features.tsv(.gz) and barcodes.tsv(.gz).",
            _ => "Check that the file was fully downloaded/copied and is an AnnData .h5ad.",
        };
        return Err(IoError::NotHdf5 {
            path: path.to_path_buf(),
            hint: hint.into(),
        });
    }
    super::guard::reading(path);
    let file = super::handles::open_read(path)
        .map_err(|e| IoError::file(path, format!("HDF5 could not open it: {e}")))?;
    let names = file.member_names().at(path, "/")?;
    let looks_like = names.iter().any(|n| n == "obs" || n == "var" || n == "X");
    if !looks_like {
        return Err(IoError::NotAnnData {
            path: path.to_path_buf(),
            detail: format!(
                "no `X`, `obs` or `var` at the root (it holds: {})",
                if names.is_empty() {
                    "nothing".into()
                } else {
                    names.join(", ")
                }
            ),
        });
    }
    Ok(file)
}

fn has_hdf5_signature(path: &Path) -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| IoError::os(path, e))?;
    let len = f.metadata().map_err(|e| IoError::os(path, e))?.len();
    // The superblock sits at 0, 512, 1024, 2048, ... (a user block may precede it).
    let mut off = 0u64;
    while off + 8 <= len {
        let mut buf = [0u8; 8];
        f.seek(SeekFrom::Start(off))
            .map_err(|e| IoError::os(path, e))?;
        f.read_exact(&mut buf).map_err(|e| IoError::os(path, e))?;
        if &buf == HDF5_SIGNATURE {
            return Ok(true);
        }
        off = if off == 0 { 512 } else { off * 2 };
    }
    Ok(false)
}
