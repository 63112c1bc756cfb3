//! Writing a state dict as a PyTorch `.pt` file (the zip format of `torch.save` since 1.6), so a
//! model scllm trained loads in the reference with `torch.load` + `load_state_dict`.
//!
//! The pickle uses only the globals `torch.load(weights_only=True)` allows
//! (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`), one
//! storage per tensor, contiguous row-major strides. Records are stored uncompressed and 64-byte
//! aligned as torch's own writer does.

use std::io::Write;
use std::path::Path;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::error::{ModelError, Result};

/// One named f32 tensor in PyTorch layout.
pub struct StateTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Minimal pickle protocol-2 emitter for the shapes a state dict needs.
struct Pickle(Vec<u8>);

impl Pickle {
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0.extend_from_slice(module.as_bytes());
        self.0.push(b'\n');
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(b'\n');
    }
    fn string(&mut self, s: &str) {
        self.0.push(b'X'); // BINUNICODE
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: usize) {
        if let Ok(v) = i32::try_from(v) {
            self.0.push(b'J'); // BININT
            self.0.extend_from_slice(&v.to_le_bytes());
        } else {
            self.0.push(0x8a); // LONG1, 8 bytes little-endian two's complement
            self.0.push(8);
            self.0.extend_from_slice(&(v as i64).to_le_bytes());
        }
    }
    fn int_tuple(&mut self, vs: &[usize]) {
        self.0.push(b'('); // MARK
        for &v in vs {
            self.int(v);
        }
        self.0.push(b't'); // TUPLE
    }
    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.0.push(b')'); // EMPTY_TUPLE
        self.0.push(b'R'); // REDUCE
    }
}

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// `data.pkl`: an `OrderedDict` of `_rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())`,
/// storage `i` being the persistent id `('storage', FloatStorage, 'i', 'cpu', numel)`; with
/// `under`, that dict is the one entry of a plain dict (CellPLM's `{'model_state_dict': ...}`).
fn state_dict_pickle(tensors: &[StateTensor], under: Option<&str>) -> Vec<u8> {
    let mut p = Pickle(vec![0x80, 2]); // PROTO 2
    if let Some(key) = under {
        p.0.push(b'}'); // EMPTY_DICT
        p.string(key);
    }
    p.empty_ordered_dict();
    p.0.push(b'('); // MARK for SETITEMS
    for (i, t) in tensors.iter().enumerate() {
        p.string(&t.name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.0.push(b'('); // MARK: the args tuple
        p.0.push(b'('); // MARK: the persistent id tuple
        p.string("storage");
        p.global("torch", "FloatStorage");
        p.string(&i.to_string());
        p.string("cpu");
        p.int(t.data.len());
        p.0.push(b't');
        p.0.push(b'Q'); // BINPERSID
        p.int(0); // storage offset
        p.int_tuple(&t.shape);
        p.int_tuple(&contiguous_strides(&t.shape));
        p.0.push(0x89); // NEWFALSE: requires_grad
        p.empty_ordered_dict(); // backward hooks
        p.0.push(b't');
        p.0.push(b'R');
    }
    p.0.push(b'u'); // SETITEMS
    if under.is_some() {
        p.0.push(b's'); // SETITEM
    }
    p.0.push(b'.'); // STOP
    p.0
}

/// Write `tensors` as a `torch.save`-format file at `path`, atomically (temporary file, then
/// rename). The archive's root folder is the file stem, as torch names it.
pub fn write_state_dict(path: impl AsRef<Path>, tensors: &[StateTensor]) -> Result<()> {
    write_torch_file(path.as_ref(), tensors, None)
}

/// [`write_state_dict`] with the state dict under the key `entry` of a dict, as
/// `torch.save({entry: state_dict})` (CellPLM's `.best.ckpt`: `model_state_dict`).
pub fn write_state_dict_under(
    path: impl AsRef<Path>,
    entry: &str,
    tensors: &[StateTensor],
) -> Result<()> {
    write_torch_file(path.as_ref(), tensors, Some(entry))
}

fn write_torch_file(path: &Path, tensors: &[StateTensor], under: Option<&str>) -> Result<()> {
    for t in tensors {
        let n: usize = t.shape.iter().product();
        if n != t.data.len() {
            return Err(ModelError::Invalid(format!(
                "tensor {}: shape {:?} holds {n} values, data has {}",
                t.name,
                t.shape,
                t.data.len()
            )));
        }
    }
    let root = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty() && s.is_ascii())
        .unwrap_or("archive")
        .to_string();
    let zerr = |e: zip::result::ZipError| ModelError::file(path, format!("cannot write: {e}"));
    let io = |e: std::io::Error| ModelError::file(path, format!("cannot write: {e}"));
    // built in memory (the zip writer seeks), then written atomically
    let mut z = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .with_alignment(64)
        .large_file(false);
    z.start_file(format!("{root}/data.pkl"), opts)
        .map_err(zerr)?;
    z.write_all(&state_dict_pickle(tensors, under))
        .map_err(io)?;
    z.start_file(format!("{root}/byteorder"), opts)
        .map_err(zerr)?;
    z.write_all(b"little").map_err(io)?;
    for (i, t) in tensors.iter().enumerate() {
        let bytes = t.data.len() * 4;
        let o = if bytes >= u32::MAX as usize {
            opts.large_file(true)
        } else {
            opts
        };
        z.start_file(format!("{root}/data/{i}"), o).map_err(zerr)?;
        let mut buf = Vec::with_capacity(bytes);
        for v in &t.data {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        z.write_all(&buf).map_err(io)?;
    }
    z.start_file(format!("{root}/version"), opts)
        .map_err(zerr)?;
    z.write_all(b"3\n").map_err(io)?;
    let bytes = z.finish().map_err(zerr)?.into_inner();
    super::save::write_atomic(path, &bytes)
}

/// Save the model as `torch.save` does for a state dict (released layout: PyTorch names and
/// shapes, `Wqkv`), so `torch.load(path, weights_only=True)` and the reference's
/// `load_pretrained` read it.
pub fn save_pt<M: crate::CellModel>(model: &M, path: impl AsRef<Path>) -> Result<()> {
    let tensors: Vec<StateTensor> = super::state_dict(model)
        .into_iter()
        .map(|(name, shape, data)| StateTensor { name, shape, data })
        .collect();
    write_state_dict(path, &tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_are_row_major() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(contiguous_strides(&[5]), vec![1]);
        assert_eq!(contiguous_strides(&[]), Vec::<usize>::new());
    }

    #[test]
    fn written_file_reads_back_with_the_pytorch_reader() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("best_model.pt");
        let tensors = vec![
            StateTensor {
                name: "encoder.embedding.weight".into(),
                shape: vec![3, 2],
                data: vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5],
            },
            StateTensor {
                name: "value_encoder.norm.bias".into(),
                shape: vec![4],
                data: vec![0.25, -0.5, 1e-7, 3.0e6],
            },
        ];
        write_state_dict(&p, &tensors).unwrap();
        let ck = crate::weights::Checkpoint::open(&p).unwrap();
        assert_eq!(ck.len(), 2);
        assert_eq!(ck.shape("encoder.embedding.weight"), Some(&[3usize, 2][..]));
        assert_eq!(
            ck.read_f32("encoder.embedding.weight").unwrap(),
            tensors[0].data
        );
        assert_eq!(
            ck.read_f32("value_encoder.norm.bias").unwrap(),
            tensors[1].data
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }
}
