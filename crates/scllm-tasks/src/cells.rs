//! Where a verb reads its cells and leaves its results: the job's file (the CLI), or an
//! AnnData the caller holds (the Python package: no file is read or written).

use std::path::Path;

use scllm_io::AnnData;

pub enum Cells<'a> {
    /// The job's input file; results are written to its output file.
    File,
    /// The caller's cells; results go into them and nothing is written. The job's input path
    /// only names them in messages.
    Memory(&'a mut AnnData),
    /// The job's input file read block by block (a backed AnnData's file): results are handed
    /// back, nothing is written. Only the verbs that stream take it (`embed`).
    Backed,
}

impl Cells<'_> {
    /// The cells (read from `path` for [`Cells::File`], kept in `owned`) and whether the
    /// results are to be written to a file.
    pub(crate) fn get<'b>(
        &'b mut self,
        path: &Path,
        owned: &'b mut Option<AnnData>,
    ) -> anyhow::Result<(&'b mut AnnData, bool)> {
        Ok(match self {
            Cells::File => (owned.insert(scllm_io::read_h5ad(path)?), true),
            Cells::Memory(a) => (&mut **a, false),
            Cells::Backed => {
                return Err(crate::bad(format!(
                    "{}: this step needs the cells in memory; load the AnnData with \
                     adata.to_memory()",
                    path.display()
                )))
            }
        })
    }
}
