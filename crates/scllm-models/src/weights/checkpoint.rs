//! Reading checkpoint files: PyTorch `.pt`/`.bin` (the pickle parsed, never executed) and
//! safetensors, with each family's spelling of its keys mapped to the one it visits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::store::pytorch_reader::{self, PickleValue, PytorchReader};
use serde::Serialize;

use crate::error::{ModelError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Pytorch,
    Safetensors,
}

enum Data {
    Pt(pytorch_reader::Tensor),
    F32(Vec<f32>),
}

struct Entry {
    /// The key as stored in the file.
    original: String,
    shape: Vec<usize>,
    data: Data,
}

/// The tensors of a checkpoint under their canonical (released-layout) keys; `.pt` data is read
/// lazily, so tensors the model does not use are never loaded.
pub struct Checkpoint {
    pub path: PathBuf,
    pub format: Format,
    entries: BTreeMap<String, Entry>,
    /// `(stored key, canonical key)` for every key read under another spelling.
    pub renamed: Vec<(String, String)>,
    /// Stored keys that collided with another after renaming (kept out, reported unexpected).
    pub duplicates: Vec<String>,
}

impl Checkpoint {
    /// Open a `.pt`/`.pth`/`.bin` (PyTorch) or `.safetensors` file, chosen by content, under
    /// its stored keys.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, &|k| k.to_string())
    }

    /// [`Self::open`] with each stored key read as `canonical_key(key)` (a family's other
    /// spellings of its keys, e.g. scGPT's three attention layouts).
    pub fn open_with(
        path: impl AsRef<Path>,
        canonical_key: &dyn Fn(&str) -> String,
    ) -> Result<Self> {
        Self::open_entry(path, None, canonical_key)
    }

    /// [`Self::open_with`] for a `torch.save`d dict that holds the weights under the entry
    /// `entry` beside others (scBERT saves `epoch`, `model_state_dict`, `optimizer_state_dict`,
    /// `scheduler_state_dict`, `losses`): only that entry's tensors are listed and only it must
    /// hold nothing but containers, plain values and tensors; the other entries are skipped
    /// whatever they hold (parsed, never built or run). A file without the entry is read whole,
    /// as a plain state dict.
    pub fn open_entry(
        path: impl AsRef<Path>,
        entry: Option<&str>,
        canonical_key: &dyn Fn(&str) -> String,
    ) -> Result<Self> {
        let path = path.as_ref();
        let mut head = [0u8; 16];
        let n = {
            use std::io::Read;
            let mut f = std::fs::File::open(path)
                .map_err(|e| ModelError::file(path, format!("cannot open: {e}")))?;
            f.read(&mut head)
                .map_err(|e| ModelError::file(path, format!("cannot read: {e}")))?
        };
        let raw = if n >= 9 && head[8] == b'{' {
            read_safetensors(path)?
        } else {
            read_pt(path, entry)?
        };
        let (format, list) = raw;
        let mut entries = BTreeMap::new();
        let mut renamed = Vec::new();
        let mut duplicates = Vec::new();
        // released spelling first, so it wins a collision
        let mut list = list;
        list.sort_by_key(|e| (canonical_key(&e.original) != e.original, e.original.clone()));
        for e in list {
            let k = canonical_key(&e.original);
            if entries.contains_key(&k) {
                duplicates.push(e.original);
                continue;
            }
            if k != e.original {
                renamed.push((e.original.clone(), k.clone()));
            }
            entries.insert(k, e);
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            format,
            entries,
            renamed,
            duplicates,
        })
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|s| s.as_str())
    }
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.entries.get(key).map(|e| e.shape.as_slice())
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tensor's values as f32 (f64/f16/bf16 are converted).
    pub fn read_f32(&self, key: &str) -> Result<Vec<f32>> {
        let e = self
            .entries
            .get(key)
            .ok_or_else(|| ModelError::file(&self.path, format!("no tensor {key}")))?;
        match &e.data {
            Data::F32(v) => Ok(v.clone()),
            Data::Pt(t) => {
                let bytes = t.read().map_err(|err| {
                    ModelError::file(&self.path, format!("{}: {err}", e.original))
                })?;
                bytes_to_f32(&bytes, pt_dtype(t.dtype())).ok_or_else(|| {
                    ModelError::file(
                        &self.path,
                        format!("{}: dtype {:?} is not a float type", e.original, t.dtype()),
                    )
                })
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Dt {
    F32,
    F64,
    F16,
    BF16,
    Other,
}

fn pt_dtype(d: pytorch_reader::DType) -> Dt {
    use pytorch_reader::DType as D;
    match d {
        D::F32 => Dt::F32,
        D::F64 => Dt::F64,
        D::F16 => Dt::F16,
        D::BF16 => Dt::BF16,
        _ => Dt::Other,
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal: renormalise
            let mut e = 127 - 15 + 1;
            let mut m = m;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn bytes_to_f32(b: &[u8], dt: Dt) -> Option<Vec<f32>> {
    Some(match dt {
        Dt::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dt::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dt::F16 => b
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dt::BF16 => b
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        Dt::Other => return None,
    })
}

/// Refuse any pickle that builds something other than containers, plain values and tensors.
/// burn's reader never executes code, but a `REDUCE` of an unknown callable (`os.system`,
/// `builtins.eval`) would otherwise vanish silently into an opaque value; such a file is not a
/// weight file and is refused with its name.
fn check_pickle(path: &Path, v: &PickleValue, at: &str) -> Result<()> {
    match v {
        PickleValue::Unsupported(name) if name == "torch.Tensor" => Ok(()),
        PickleValue::Unsupported(name) => Err(ModelError::Unsafe {
            path: path.to_path_buf(),
            message: format!(
                "the pickle calls or builds the Python object `{name}`{} where a checkpoint holds tensors only; \
                 it was not run. Load it in Python only if you trust it, and re-save the weights with \
                 torch.save(model.state_dict(), ...) or as safetensors",
                if at.is_empty() { String::new() } else { format!(" (at `{at}`)") }
            ),
        }),
        PickleValue::List(items) => {
            items.iter().enumerate().try_for_each(|(i, x)| check_pickle(path, x, &join(at, &i.to_string())))
        }
        PickleValue::Dict(m) => m.iter().try_for_each(|(k, x)| check_pickle(path, x, &join(at, k))),
        _ => Ok(()),
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}.{b}")
    }
}

fn read_pt(path: &Path, entry: Option<&str>) -> Result<(Format, Vec<Entry>)> {
    let bad = |e: pytorch_reader::PytorchError| {
        ModelError::file(path, format!("not a readable PyTorch checkpoint: {e} (expected a torch.save()d state_dict, e.g. best_model.pt)"))
    };
    let tree = PytorchReader::read_pickle_data(path, None).map_err(bad)?;
    let weights = match (&tree, entry) {
        (PickleValue::Dict(m), Some(k)) => m.get(k).map(|v| (k, v)),
        _ => None,
    };
    let r = match weights {
        Some((k, v)) => {
            check_pickle(path, v, k)?;
            PytorchReader::with_top_level_key(path, k).map_err(bad)?
        }
        None => {
            check_pickle(path, &tree, "")?;
            PytorchReader::new(path).map_err(bad)?
        }
    };
    let list: Vec<Entry> = r
        .into_tensors()
        .into_iter()
        .map(|(k, t)| Entry {
            original: k,
            shape: t.shape().to_vec(),
            data: Data::Pt(t),
        })
        .collect();
    if list.is_empty() {
        return Err(ModelError::file(
            path,
            "holds no tensors (expected a state_dict of the model's weights)",
        ));
    }
    Ok((Format::Pytorch, list))
}

fn read_safetensors(path: &Path) -> Result<(Format, Vec<Entry>)> {
    use safetensors::{Dtype, SafeTensors};
    let bytes =
        std::fs::read(path).map_err(|e| ModelError::file(path, format!("cannot read: {e}")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| ModelError::file(path, format!("not a valid safetensors file: {e}")))?;
    let mut list = Vec::new();
    for (name, view) in st.tensors() {
        let dt = match view.dtype() {
            Dtype::F32 => Dt::F32,
            Dtype::F64 => Dt::F64,
            Dtype::F16 => Dt::F16,
            Dtype::BF16 => Dt::BF16,
            // integer tensors (fixture inputs, buffers) are not weights: listed as unexpected
            _ => Dt::Other,
        };
        let data = bytes_to_f32(view.data(), dt).unwrap_or_default();
        list.push(Entry {
            original: name,
            shape: view.shape().to_vec(),
            data: Data::F32(data),
        });
    }
    Ok((Format::Safetensors, list))
}
