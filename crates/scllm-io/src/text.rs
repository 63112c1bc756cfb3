//! Text formats: 10x Genomics `matrix.mtx` folders and CSV tables.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::anndata::AnnData;
use crate::error::{IoError, Result};
use crate::frame::{Column, DataFrame};
use crate::h5ad::read_h5ad;
use crate::matrix::{Compressed, Matrix, Values};

fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let f = std::fs::File::open(path).map_err(|e| IoError::os(path, e))?;
    let r: Box<dyn Read> = if path.extension().and_then(|e| e.to_str()) == Some("gz") {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, r)))
}

fn first_existing(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.exists())
}

/// Make names unique the way anndata's `var_names_make_unique` does: the second `A` becomes
/// `A-1`, the third `A-2`, skipping names already taken.
pub fn make_unique(names: &mut [String]) {
    use std::collections::{HashMap, HashSet};
    let mut seen: HashSet<String> = names.iter().cloned().collect();
    let mut count: HashMap<String, usize> = HashMap::new();
    let mut first: HashSet<String> = HashSet::new();
    for name in names.iter_mut() {
        if first.insert(name.clone()) {
            continue;
        }
        let base = name.clone();
        let c = count.entry(base.clone()).or_insert(0);
        loop {
            *c += 1;
            let cand = format!("{base}-{c}");
            if !seen.contains(&cand) {
                seen.insert(cand.clone());
                *name = cand;
                break;
            }
        }
    }
}

/// Read a 10x Genomics folder (`matrix.mtx(.gz)`, `features.tsv(.gz)` or `genes.tsv`,
/// `barcodes.tsv(.gz)`), as scanpy's `read_10x_mtx` does: genes named by symbol (made unique),
/// Ensembl ids in `var['gene_ids']`, X as CSR float32 cells × genes.
pub fn read_10x_dir(dir: impl AsRef<Path>) -> Result<AnnData> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(IoError::os(
            dir,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let need = |names: &[&str], what: &str| {
        first_existing(dir, names).ok_or_else(|| {
            IoError::file(
                dir,
                format!(
                    "no {what} in this 10x folder (looked for {})",
                    names.join(", ")
                ),
            )
        })
    };
    let mtx = need(&["matrix.mtx.gz", "matrix.mtx"], "matrix")?;
    let feats = need(
        &[
            "features.tsv.gz",
            "features.tsv",
            "genes.tsv.gz",
            "genes.tsv",
        ],
        "gene table",
    )?;
    let bcs = need(&["barcodes.tsv.gz", "barcodes.tsv"], "barcode list")?;

    let mut gene_ids = Vec::new();
    let mut symbols = Vec::new();
    let mut types = Vec::new();
    for line in open_text(&feats)?.lines() {
        let line = line.map_err(|e| IoError::os(&feats, e))?;
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        gene_ids.push(f[0].to_string());
        symbols.push(f.get(1).unwrap_or(&f[0]).to_string());
        types.push(f.get(2).unwrap_or(&"Gene Expression").to_string());
    }
    let barcodes: Vec<String> = open_text(&bcs)?
        .lines()
        .map(|l| l.map_err(|e| IoError::os(&bcs, e)))
        .filter(|l| !matches!(l, Ok(s) if s.is_empty()))
        .collect::<Result<_>>()?;

    let (n_genes, n_cells, triples) = read_mtx(&mtx)?;
    if n_genes != gene_ids.len() || n_cells != barcodes.len() {
        return Err(IoError::file(
            &mtx,
            format!(
                "is {n_genes} genes x {n_cells} cells but the folder lists {} genes and {} barcodes",
                gene_ids.len(),
                barcodes.len()
            ),
        ));
    }
    // 10x stores genes × cells; build cells × genes CSR.
    let x = triples_to_csr(
        n_cells,
        n_genes,
        triples.into_iter().map(|(g, c, v)| (c, g, v)),
    );
    make_unique(&mut symbols);
    let mut var = DataFrame::new(symbols);
    var.set("gene_ids", Column::Str(gene_ids));
    var.set("feature_types", Column::Str(types));
    let obs = DataFrame::new(barcodes);
    let mut ad = AnnData::new(Matrix::Csr(x), obs, var);
    ad.source = Some(dir.to_path_buf());
    Ok(ad)
}

/// (rows, columns, (row, column, value) entries), 0-based.
type Triples = (usize, usize, Vec<(usize, usize, f32)>);

fn read_mtx(path: &Path) -> Result<Triples> {
    let mut lines = open_text(path)?.lines();
    let bad = |msg: String| IoError::file(path, msg);
    let header = lines
        .next()
        .ok_or_else(|| bad("empty file".into()))?
        .map_err(|e| IoError::os(path, e))?;
    let h = header.to_lowercase();
    if !h.starts_with("%%matrixmarket matrix coordinate") {
        return Err(bad(format!(
            "not a MatrixMarket coordinate file (header: {header:?})"
        )));
    }
    if h.contains("complex") || h.contains("pattern") {
        return Err(bad(
            "only integer/real MatrixMarket matrices are supported".into()
        ));
    }
    let mut size: Option<(usize, usize, usize)> = None;
    let mut out = Vec::new();
    for (lineno, line) in lines.enumerate() {
        let line = line.map_err(|e| IoError::os(path, e))?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('%') {
            continue;
        }
        let mut it = t.split_ascii_whitespace();
        let mut next = || {
            it.next()
                .ok_or_else(|| bad(format!("line {}: too few fields", lineno + 2)))
        };
        if size.is_none() {
            let r: usize = next()?.parse().map_err(|_| bad("bad size line".into()))?;
            let c: usize = next()?.parse().map_err(|_| bad("bad size line".into()))?;
            let n: usize = next()?.parse().map_err(|_| bad("bad size line".into()))?;
            size = Some((r, c, n));
            out.reserve(n);
            continue;
        }
        let (r, c, _) = size.unwrap();
        let i: usize = next()?
            .parse()
            .map_err(|_| bad(format!("line {}: bad row", lineno + 2)))?;
        let j: usize = next()?
            .parse()
            .map_err(|_| bad(format!("line {}: bad column", lineno + 2)))?;
        let v: f32 = next()?
            .parse()
            .map_err(|_| bad(format!("line {}: bad value", lineno + 2)))?;
        if i == 0 || j == 0 || i > r || j > c {
            return Err(bad(format!(
                "line {}: entry ({i},{j}) outside {r}x{c}",
                lineno + 2
            )));
        }
        out.push((i - 1, j - 1, v));
    }
    let (r, c, n) = size.ok_or_else(|| bad("no size line".into()))?;
    if out.len() != n {
        return Err(bad(format!(
            "header promises {n} entries, found {}",
            out.len()
        )));
    }
    Ok((r, c, out))
}

fn triples_to_csr(
    nrows: usize,
    ncols: usize,
    t: impl Iterator<Item = (usize, usize, f32)>,
) -> Compressed {
    let mut t: Vec<(usize, usize, f32)> = t.collect();
    t.sort_unstable_by_key(|&(i, j, _)| (i, j));
    let mut indptr = vec![0u64; nrows + 1];
    for &(i, _, _) in &t {
        indptr[i + 1] += 1;
    }
    for i in 0..nrows {
        indptr[i + 1] += indptr[i];
    }
    Compressed {
        nrows,
        ncols,
        indptr,
        indices: t.iter().map(|&(_, j, _)| j as u32).collect(),
        data: Values::F32(t.iter().map(|&(_, _, v)| v).collect()),
    }
}

/// Read a CSV/TSV table with cells as rows: the first column holds cell ids, the header gene
/// names (as `scanpy.read_csv(...)` with `first_column_names=True`). Zeros are not stored.
pub fn read_csv(path: impl AsRef<Path>) -> Result<AnnData> {
    let path = path.as_ref();
    let name = path.to_string_lossy().to_lowercase();
    let sep = if name.ends_with(".tsv")
        || name.ends_with(".tsv.gz")
        || name.ends_with(".txt")
        || name.ends_with(".txt.gz")
    {
        '\t'
    } else {
        ','
    };
    let mut lines = open_text(path)?.lines();
    let header = lines
        .next()
        .ok_or_else(|| IoError::file(path, "empty file"))?
        .map_err(|e| IoError::os(path, e))?;
    let genes: Vec<String> = header
        .split(sep)
        .skip(1)
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect();
    if genes.is_empty() {
        return Err(IoError::file(
            path,
            "the header has no gene columns (expected: cell id, then one column per gene)",
        ));
    }
    let mut cells = Vec::new();
    let mut indptr = vec![0u64];
    let mut indices = Vec::new();
    let mut data = Vec::new();
    for (k, line) in lines.enumerate() {
        let line = line.map_err(|e| IoError::os(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut f = line.split(sep);
        cells.push(f.next().unwrap_or("").trim().trim_matches('"').to_string());
        let mut n = 0;
        for (j, v) in f.enumerate() {
            let v = v.trim();
            let x: f32 = if v.is_empty() {
                f32::NAN
            } else {
                v.parse().map_err(|_| {
                    IoError::field(
                        path,
                        format!("line {}", k + 2),
                        format!("value {v:?} is not a number"),
                    )
                })?
            };
            if j >= genes.len() {
                return Err(IoError::field(
                    path,
                    format!("line {}", k + 2),
                    "more values than header columns",
                ));
            }
            if x != 0.0 {
                indices.push(j as u32);
                data.push(x);
            }
            n += 1;
        }
        if n != genes.len() {
            return Err(IoError::field(
                path,
                format!("line {}", k + 2),
                format!("{n} values but the header names {} genes", genes.len()),
            ));
        }
        indptr.push(indices.len() as u64);
    }
    let x = Compressed {
        nrows: cells.len(),
        ncols: genes.len(),
        indptr,
        indices,
        data: Values::F32(data),
    };
    let mut ad = AnnData::new(Matrix::Csr(x), DataFrame::new(cells), DataFrame::new(genes));
    ad.source = Some(path.to_path_buf());
    Ok(ad)
}

/// Read any supported input: a 10x folder, a CSV/TSV table, or an `.h5ad` file.
pub fn read_any(path: impl AsRef<Path>) -> Result<AnnData> {
    let path = path.as_ref();
    if path.is_dir() {
        read_10x_dir(path)
    } else if is_table(path) {
        read_csv(path)
    } else {
        read_h5ad(path)
    }
}

/// A text table by its name (`.csv`, `.tsv`, `.txt`, each maybe `.gz`): what [`read_any`] reads
/// as CSV.
fn is_table(path: &Path) -> bool {
    let lower = path.to_string_lossy().to_lowercase();
    [".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz"]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// Whether [`read_any`] reads `path` as `.h5ad` (neither a folder nor a text table).
pub fn is_h5ad_path(path: &Path) -> bool {
    !path.is_dir() && !is_table(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_unique_matches_anndata() {
        let mut v: Vec<String> = ["A", "B", "A", "A", "A-1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        make_unique(&mut v);
        // anndata: ['A', 'B', 'A-2', 'A-3', 'A-1'] — the existing A-1 is skipped
        assert_eq!(v, ["A", "B", "A-2", "A-3", "A-1"]);
    }
}
