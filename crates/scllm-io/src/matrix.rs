//! Expression matrices as AnnData stores them: dense, CSR or CSC, with the element type kept, so that
//! a file read and written again holds the same values in the same dtype.

/// The values of a matrix or array, in the dtype the file used. Equality is bit-exact, so NaN
/// equals NaN: "the same data" after a round trip.
#[derive(Clone, Debug)]
pub enum Values {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

/// Bit-exact float comparison (NaN == NaN, -0 != +0).
pub fn same_f32(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
/// Bit-exact float comparison (NaN == NaN, -0 != +0).
pub fn same_f64(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

impl PartialEq for Values {
    fn eq(&self, other: &Values) -> bool {
        match (self, other) {
            (Values::F32(a), Values::F32(b)) => same_f32(a, b),
            (Values::F64(a), Values::F64(b)) => same_f64(a, b),
            (Values::I32(a), Values::I32(b)) => a == b,
            (Values::I64(a), Values::I64(b)) => a == b,
            _ => false,
        }
    }
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::F64(v) => v.len(),
            Values::I32(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn dtype(&self) -> &'static str {
        match self {
            Values::F32(_) => "float32",
            Values::F64(_) => "float64",
            Values::I32(_) => "int32",
            Values::I64(_) => "int64",
        }
    }
    /// Values as f32 (counts and log-normalised data fit; f64 input is rounded).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Values::F32(v) => v.clone(),
            Values::F64(v) => v.iter().map(|&x| x as f32).collect(),
            Values::I32(v) => v.iter().map(|&x| x as f32).collect(),
            Values::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            Values::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Values::F64(v) => v.clone(),
            Values::I32(v) => v.iter().map(|&x| x as f64).collect(),
            Values::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }
    /// Value `i` as f64.
    #[inline]
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Values::F32(v) => v[i] as f64,
            Values::F64(v) => v[i],
            Values::I32(v) => v[i] as f64,
            Values::I64(v) => v[i] as f64,
        }
    }
    /// The sub-range `[start, end)` in the same dtype.
    pub fn slice(&self, start: usize, end: usize) -> Values {
        match self {
            Values::F32(v) => Values::F32(v[start..end].to_vec()),
            Values::F64(v) => Values::F64(v[start..end].to_vec()),
            Values::I32(v) => Values::I32(v[start..end].to_vec()),
            Values::I64(v) => Values::I64(v[start..end].to_vec()),
        }
    }
    /// Gather the entries at `idx` in the same dtype.
    pub fn gather(&self, idx: &[usize]) -> Values {
        match self {
            Values::F32(v) => Values::F32(idx.iter().map(|&i| v[i]).collect()),
            Values::F64(v) => Values::F64(idx.iter().map(|&i| v[i]).collect()),
            Values::I32(v) => Values::I32(idx.iter().map(|&i| v[i]).collect()),
            Values::I64(v) => Values::I64(idx.iter().map(|&i| v[i]).collect()),
        }
    }
    fn empty_like(&self) -> Values {
        match self {
            Values::F32(_) => Values::F32(Vec::new()),
            Values::F64(_) => Values::F64(Vec::new()),
            Values::I32(_) => Values::I32(Vec::new()),
            Values::I64(_) => Values::I64(Vec::new()),
        }
    }
    fn extend_from(&mut self, other: &Values, start: usize, end: usize) {
        match (self, other) {
            (Values::F32(a), Values::F32(b)) => a.extend_from_slice(&b[start..end]),
            (Values::F64(a), Values::F64(b)) => a.extend_from_slice(&b[start..end]),
            (Values::I32(a), Values::I32(b)) => a.extend_from_slice(&b[start..end]),
            (Values::I64(a), Values::I64(b)) => a.extend_from_slice(&b[start..end]),
            _ => unreachable!("extend_from between different dtypes"),
        }
    }
}

/// A compressed sparse matrix. For CSR, `indptr` runs over rows and `indices` are column ids; for
/// CSC the roles swap. The orientation is carried by [`Matrix`].
#[derive(Clone, Debug, PartialEq)]
pub struct Compressed {
    pub nrows: usize,
    pub ncols: usize,
    pub indptr: Vec<u64>,
    pub indices: Vec<u32>,
    pub data: Values,
}

impl Compressed {
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }
    /// Range of entries of major slice `i` (row for CSR, column for CSC).
    #[inline]
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.indptr[i] as usize..self.indptr[i + 1] as usize
    }
    /// Transpose the storage: CSR of (r×c) becomes CSR of (c×r); used for CSR<->CSC conversion.
    fn transpose_storage(&self, n_major: usize, n_minor: usize) -> Compressed {
        let nnz = self.nnz();
        let mut counts = vec![0u64; n_minor + 1];
        for &j in &self.indices {
            counts[j as usize + 1] += 1;
        }
        for j in 0..n_minor {
            counts[j + 1] += counts[j];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut indices = vec![0u32; nnz];
        let mut order = vec![0usize; nnz];
        for i in 0..n_major {
            for k in self.range(i) {
                let j = self.indices[k] as usize;
                let dst = next[j] as usize;
                next[j] += 1;
                indices[dst] = i as u32;
                order[dst] = k;
            }
        }
        Compressed {
            nrows: self.ncols,
            ncols: self.nrows,
            indptr,
            indices,
            data: self.data.gather(&order),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Matrix {
    /// Row-major dense values.
    Dense {
        nrows: usize,
        ncols: usize,
        data: Values,
    },
    Csr(Compressed),
    Csc(Compressed),
}

impl Matrix {
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Matrix::Dense { nrows, ncols, .. } => (*nrows, *ncols),
            Matrix::Csr(c) | Matrix::Csc(c) => (c.nrows, c.ncols),
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Matrix::Dense { .. } => "dense",
            Matrix::Csr(_) => "csr",
            Matrix::Csc(_) => "csc",
        }
    }
    pub fn values(&self) -> &Values {
        match self {
            Matrix::Dense { data, .. } => data,
            Matrix::Csr(c) | Matrix::Csc(c) => &c.data,
        }
    }
    /// Stored entries (all entries for dense).
    pub fn stored(&self) -> usize {
        self.values().len()
    }

    /// The same matrix as CSR, keeping the dtype. Dense zeros are dropped.
    pub fn to_csr(&self) -> Compressed {
        match self {
            Matrix::Csr(c) => c.clone(),
            Matrix::Csc(c) => c
                .transpose_storage(c.ncols, c.nrows)
                .with_shape(c.nrows, c.ncols),
            Matrix::Dense { nrows, ncols, data } => {
                let mut indptr = Vec::with_capacity(nrows + 1);
                indptr.push(0u64);
                let mut indices = Vec::new();
                let mut keep = Vec::new();
                for i in 0..*nrows {
                    for j in 0..*ncols {
                        let k = i * ncols + j;
                        if data.get_f64(k) != 0.0 {
                            indices.push(j as u32);
                            keep.push(k);
                        }
                    }
                    indptr.push(indices.len() as u64);
                }
                Compressed {
                    nrows: *nrows,
                    ncols: *ncols,
                    indptr,
                    indices,
                    data: data.gather(&keep),
                }
            }
        }
    }

    /// The same matrix as CSC, keeping the dtype.
    pub fn to_csc(&self) -> Compressed {
        match self {
            Matrix::Csc(c) => c.clone(),
            _ => {
                let csr = self.to_csr();
                csr.transpose_storage(csr.nrows, csr.ncols)
                    .with_shape(csr.nrows, csr.ncols)
            }
        }
    }

    /// Row-major dense f64 copy (for small matrices and tests).
    pub fn to_dense_f64(&self) -> Vec<f64> {
        let (n, m) = self.shape();
        match self {
            Matrix::Dense { data, .. } => data.to_f64(),
            Matrix::Csr(c) => {
                let mut out = vec![0.0; n * m];
                for i in 0..n {
                    for k in c.range(i) {
                        out[i * m + c.indices[k] as usize] = c.data.get_f64(k);
                    }
                }
                out
            }
            Matrix::Csc(c) => {
                let mut out = vec![0.0; n * m];
                for j in 0..m {
                    for k in c.range(j) {
                        out[c.indices[k] as usize * m + j] = c.data.get_f64(k);
                    }
                }
                out
            }
        }
    }

    /// Keep the rows in `rows` (in that order).
    pub fn select_rows(&self, rows: &[usize]) -> Matrix {
        match self {
            Matrix::Dense { ncols, data, .. } => {
                let idx: Vec<usize> = rows
                    .iter()
                    .flat_map(|&r| (r * ncols)..((r + 1) * ncols))
                    .collect();
                Matrix::Dense {
                    nrows: rows.len(),
                    ncols: *ncols,
                    data: data.gather(&idx),
                }
            }
            Matrix::Csr(c) => Matrix::Csr(c.select_major(rows, true)),
            Matrix::Csc(_) => {
                Matrix::Csc(Matrix::Csr(self.to_csr().select_major(rows, true)).to_csc())
            }
        }
    }

    /// Keep the columns in `cols` (in that order).
    pub fn select_cols(&self, cols: &[usize]) -> Matrix {
        match self {
            Matrix::Dense { nrows, ncols, data } => {
                let idx: Vec<usize> = (0..*nrows)
                    .flat_map(|r| cols.iter().map(move |&c| r * ncols + c))
                    .collect();
                Matrix::Dense {
                    nrows: *nrows,
                    ncols: cols.len(),
                    data: data.gather(&idx),
                }
            }
            Matrix::Csc(c) => Matrix::Csc(c.select_major(cols, false)),
            Matrix::Csr(c) => {
                let mut new_pos = vec![u32::MAX; c.ncols];
                for (p, &j) in cols.iter().enumerate() {
                    new_pos[j] = p as u32;
                }
                let sorted = cols.windows(2).all(|w| w[0] < w[1]);
                let mut indptr = vec![0u64];
                let mut indices = Vec::new();
                let mut keep = Vec::new();
                for i in 0..c.nrows {
                    let start = indices.len();
                    for k in c.range(i) {
                        let p = new_pos[c.indices[k] as usize];
                        if p != u32::MAX {
                            indices.push(p);
                            keep.push(k);
                        }
                    }
                    if !sorted {
                        // keep column indices ascending within the row, as scipy's canonical format
                        let mut pairs: Vec<(u32, usize)> = indices[start..]
                            .iter()
                            .copied()
                            .zip(keep[start..].iter().copied())
                            .collect();
                        pairs.sort_unstable();
                        for (o, (p, k)) in pairs.into_iter().enumerate() {
                            indices[start + o] = p;
                            keep[start + o] = k;
                        }
                    }
                    indptr.push(indices.len() as u64);
                }
                Matrix::Csr(Compressed {
                    nrows: c.nrows,
                    ncols: cols.len(),
                    indptr,
                    indices,
                    data: c.data.gather(&keep),
                })
            }
        }
    }
}

impl Compressed {
    fn with_shape(mut self, nrows: usize, ncols: usize) -> Compressed {
        self.nrows = nrows;
        self.ncols = ncols;
        self
    }
    /// Keep the major slices in `major` (rows for CSR, columns for CSC), in that order.
    /// `rows_major` says whether this is CSR storage (major = rows) or CSC (major = columns).
    pub fn select_major(&self, major: &[usize], rows_major: bool) -> Compressed {
        let mut indptr = Vec::with_capacity(major.len() + 1);
        indptr.push(0u64);
        let mut indices = Vec::new();
        let mut data = self.data.empty_like();
        for &i in major {
            let r = self.range(i);
            indices.extend_from_slice(&self.indices[r.clone()]);
            data.extend_from(&self.data, r.start, r.end);
            indptr.push(indices.len() as u64);
        }
        // The shape keeps the minor extent; the major extent becomes major.len().
        let (nrows, ncols) = if rows_major {
            (major.len(), self.ncols)
        } else {
            (self.nrows, major.len())
        };
        Compressed {
            nrows,
            ncols,
            indptr,
            indices,
            data,
        }
    }

    /// Row `i` of a CSR matrix as (column ids, values as f32).
    pub fn row_f32(&self, i: usize) -> (&[u32], Vec<f32>) {
        let r = self.range(i);
        let vals = match &self.data {
            Values::F32(v) => v[r.clone()].to_vec(),
            other => r.clone().map(|k| other.get_f64(k) as f32).collect(),
        };
        (&self.indices[r], vals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Matrix {
        // [[1 0 2], [0 0 3], [4 5 0]]
        Matrix::Csr(Compressed {
            nrows: 3,
            ncols: 3,
            indptr: vec![0, 2, 3, 5],
            indices: vec![0, 2, 2, 0, 1],
            data: Values::F32(vec![1., 2., 3., 4., 5.]),
        })
    }

    #[test]
    fn csr_csc_dense_agree() {
        let m = example();
        let dense = m.to_dense_f64();
        assert_eq!(dense, vec![1., 0., 2., 0., 0., 3., 4., 5., 0.]);
        let csc = Matrix::Csc(m.to_csc());
        assert_eq!(csc.to_dense_f64(), dense);
        assert_eq!(Matrix::Csr(csc.to_csr()), m);
        let d = Matrix::Dense {
            nrows: 3,
            ncols: 3,
            data: Values::F64(dense.clone()),
        };
        assert_eq!(Matrix::Csr(d.to_csr()).to_dense_f64(), dense);
    }

    #[test]
    fn selecting_rows_and_columns() {
        let m = example();
        let r = m.select_rows(&[2, 0]);
        assert_eq!(r.to_dense_f64(), vec![4., 5., 0., 1., 0., 2.]);
        let c = m.select_cols(&[2, 0]);
        assert_eq!(c.to_dense_f64(), vec![2., 1., 3., 0., 0., 4.]);
        // reordered columns stay sorted within a row
        if let Matrix::Csr(cc) = &c {
            assert_eq!(&cc.indices[0..2], &[0, 1]);
        }
        let csc = Matrix::Csc(m.to_csc());
        assert_eq!(csc.select_cols(&[1]).to_dense_f64(), vec![0., 0., 5.]);
        assert_eq!(csc.select_rows(&[1]).to_dense_f64(), vec![0., 0., 3.]);
    }
}
