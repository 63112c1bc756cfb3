//! Checkpoint import and export: PyTorch `.pt` (read without executing anything) and safetensors,
//! the reference's "copy a tensor only when its name and shape match" rule, and a loud report of
//! what was loaded, skipped, missing and unexpected.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::store::pytorch_reader::{self, PickleValue, PytorchReader};
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use crate::error::{ModelError, Result};
use crate::scgpt::{ParamVisitor, ScGpt};

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
    /// `(stored key, canonical key)` for every key that was renamed.
    pub renamed: Vec<(String, String)>,
    /// Stored keys that collided with another after renaming (kept out, reported unexpected).
    pub duplicates: Vec<String>,
}

/// The released layout's attention names, from the other two spellings:
/// torch's `self_attn.in_proj_{weight,bias}` and the 2026 wrapper's `self_attn._impl.*`.
pub fn canonical_key(key: &str) -> String {
    let k = key.replace(".self_attn._impl.", ".self_attn.");
    k.replace(".self_attn.in_proj_weight", ".self_attn.Wqkv.weight")
        .replace(".self_attn.in_proj_bias", ".self_attn.Wqkv.bias")
}

impl Checkpoint {
    /// Open a `.pt`/`.pth`/`.bin` (PyTorch) or `.safetensors` file, chosen by content.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
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
            read_pt(path)?
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

fn read_pt(path: &Path) -> Result<(Format, Vec<Entry>)> {
    let bad = |e: pytorch_reader::PytorchError| {
        ModelError::file(path, format!("not a readable PyTorch checkpoint: {e} (expected a torch.save()d state_dict, e.g. best_model.pt)"))
    };
    let tree = PytorchReader::read_pickle_data(path, None).map_err(bad)?;
    check_pickle(path, &tree, "")?;
    let r = PytorchReader::new(path).map_err(bad)?;
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

/// A tensor that was not loaded because its shape differs from the model's.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Skipped {
    pub key: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
}

/// What a load did, key by key (PyTorch names and layouts).
#[derive(Clone, Debug, Serialize, Default)]
pub struct LoadReport {
    pub path: PathBuf,
    pub format: Option<Format>,
    pub loaded: Vec<String>,
    /// In both, with a different shape: the model keeps its random init (the reference's rule).
    pub skipped: Vec<Skipped>,
    /// The model has it, the checkpoint does not: random init.
    pub missing: Vec<String>,
    /// The checkpoint has it, the model does not (e.g. `flag_encoder.weight` of the release).
    pub unexpected: Vec<String>,
    /// Attention keys read under another spelling, `(stored, as loaded)`.
    pub renamed: Vec<(String, String)>,
    /// A likely cause when nothing lines up (e.g. a `module.` prefix).
    pub hint: Option<String>,
}

impl LoadReport {
    /// Whether every model parameter came from the checkpoint.
    pub fn is_complete(&self) -> bool {
        self.skipped.is_empty() && self.missing.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "loaded {} tensors, skipped {} (shape mismatch), missing {}, unexpected {}",
            self.loaded.len(),
            self.skipped.len(),
            self.missing.len(),
            self.unexpected.len()
        );
        if !self.renamed.is_empty() {
            s.push_str(&format!(
                ", {} attention keys renamed to Wqkv",
                self.renamed.len()
            ));
        }
        s
    }

    /// Multi-line human report: summary then every non-loaded key.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}: {}\n", self.path.display(), self.summary());
        for k in &self.skipped {
            s.push_str(&format!(
                "  skipped    {} (checkpoint {:?}, model {:?}): kept at random init\n",
                k.key, k.found, k.expected
            ));
        }
        for k in &self.missing {
            s.push_str(&format!("  missing    {k}: kept at random init\n"));
        }
        for k in &self.unexpected {
            s.push_str(&format!("  unexpected {k}: not used\n"));
        }
        if let Some(h) = &self.hint {
            s.push_str(&format!("  hint: {h}\n"));
        }
        s
    }
}

/// Copies checkpoint tensors into the model where name and shape match, recording the rest.
struct Loader<'a> {
    ckpt: &'a Checkpoint,
    dev: Device,
    report: LoadReport,
    used: BTreeSet<String>,
    error: Option<ModelError>,
}

impl Loader<'_> {
    /// The checkpoint's values for `key` if the shape matches `expected` (PyTorch layout).
    fn take(&mut self, key: &str, expected: &[usize]) -> Option<Vec<f32>> {
        if self.error.is_some() {
            return None;
        }
        let Some(found) = self.ckpt.shape(key) else {
            self.report.missing.push(key.to_string());
            return None;
        };
        self.used.insert(key.to_string());
        if found != expected {
            self.report.skipped.push(Skipped {
                key: key.to_string(),
                expected: expected.to_vec(),
                found: found.to_vec(),
            });
            return None;
        }
        match self.ckpt.read_f32(key) {
            Ok(v) => {
                self.report.loaded.push(key.to_string());
                Some(v)
            }
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
    fn param1(&self, v: Vec<f32>) -> Param<Tensor<1>> {
        let n = v.len();
        Param::from_tensor(Tensor::from_data(TensorData::new(v, [n]), &self.dev))
    }
}

impl ParamVisitor for Loader<'_> {
    fn linear(&mut self, key: &str, m: &mut Linear) {
        let [din, dout] = m.weight.dims();
        if let Some(w) = self.take(&format!("{key}.weight"), &[dout, din]) {
            // PyTorch stores [out, in]; burn's Linear holds [in, out]
            let mut t = vec![0f32; w.len()];
            for o in 0..dout {
                for i in 0..din {
                    t[i * dout + o] = w[o * din + i];
                }
            }
            m.weight = Param::from_tensor(Tensor::from_data(
                TensorData::new(t, [din, dout]),
                &self.dev,
            ));
        }
        if m.bias.is_some() {
            if let Some(b) = self.take(&format!("{key}.bias"), &[dout]) {
                m.bias = Some(self.param1(b));
            }
        }
    }
    fn layer_norm(&mut self, key: &str, m: &mut LayerNorm) {
        let [d] = m.gamma.dims();
        if let Some(w) = self.take(&format!("{key}.weight"), &[d]) {
            m.gamma = self.param1(w);
        }
        if let Some(b) = self.take(&format!("{key}.bias"), &[d]) {
            m.beta = Some(self.param1(b));
        }
    }
    fn embedding(&mut self, key: &str, m: &mut Embedding) {
        let shape = m.weight.dims();
        if let Some(w) = self.take(&format!("{key}.weight"), &shape) {
            m.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, shape), &self.dev));
        }
    }
    fn tensor2(&mut self, key: &str, p: &mut Param<Tensor<2>>) {
        let shape = p.dims();
        if let Some(w) = self.take(key, &shape) {
            *p = Param::from_tensor(Tensor::from_data(TensorData::new(w, shape), &self.dev));
        }
    }
    fn tensor3(&mut self, key: &str, p: &mut Param<Tensor<3>>) {
        let shape = p.dims();
        if let Some(w) = self.take(key, &shape) {
            *p = Param::from_tensor(Tensor::from_data(TensorData::new(w, shape), &self.dev));
        }
    }
}

/// Load `ckpt` into `model` by name and shape (the reference's `load_pretrained` rule) and
/// report every key. With `strict`, anything skipped or missing is an error.
pub fn load_into(
    model: &mut ScGpt,
    ckpt: &Checkpoint,
    strict: bool,
    dev: &Device,
) -> Result<LoadReport> {
    let mut l = Loader {
        ckpt,
        dev: dev.clone(),
        report: LoadReport {
            path: ckpt.path.clone(),
            format: Some(ckpt.format),
            ..Default::default()
        },
        used: BTreeSet::new(),
        error: None,
    };
    model.visit_params(&mut l);
    if let Some(e) = l.error {
        return Err(e);
    }
    let mut report = l.report;
    report.unexpected = ckpt
        .keys()
        .filter(|k| !l.used.contains(*k))
        .map(String::from)
        .collect();
    report.unexpected.extend(ckpt.duplicates.iter().cloned());
    report.renamed = ckpt.renamed.clone();
    report.hint = hint(&report);
    if report.loaded.is_empty() {
        return Err(ModelError::file(
            &ckpt.path,
            format!(
                "no tensor matches the scGPT model ({} in the file, e.g. `{}`){}",
                ckpt.len(),
                ckpt.keys().next().unwrap_or(""),
                report
                    .hint
                    .as_deref()
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default()
            ),
        ));
    }
    if strict && !report.is_complete() {
        let mut parts = Vec::new();
        if !report.missing.is_empty() {
            parts.push(format!("missing {}", report.missing.join(", ")));
        }
        if !report.skipped.is_empty() {
            let s: Vec<String> = report
                .skipped
                .iter()
                .map(|s| {
                    format!(
                        "{} (checkpoint {:?}, model {:?})",
                        s.key, s.found, s.expected
                    )
                })
                .collect();
            parts.push(format!("shape mismatch {}", s.join(", ")));
        }
        return Err(ModelError::Strict {
            path: ckpt.path.clone(),
            summary: parts.join("; "),
        });
    }
    Ok(report)
}

/// Spot a common prefix on the unexpected keys that would make them the missing ones.
fn hint(r: &LoadReport) -> Option<String> {
    if r.missing.is_empty() || r.unexpected.is_empty() {
        return None;
    }
    let miss: BTreeSet<&str> = r.missing.iter().map(|s| s.as_str()).collect();
    let first = &r.missing[0];
    let u = r.unexpected.iter().find(|u| u.ends_with(first.as_str()))?;
    let prefix = &u[..u.len() - first.len()];
    let hits = r
        .unexpected
        .iter()
        .filter(|u| u.strip_prefix(prefix).is_some_and(|s| miss.contains(s)))
        .count();
    (hits * 2 >= r.missing.len()).then(|| {
        format!("{hits} checkpoint keys carry the prefix `{prefix}` (a DataParallel or wrapper save?); strip it when re-saving")
    })
}

/// Collects the model's parameters under their state-dict keys in PyTorch layout.
pub(crate) struct Saver {
    pub(crate) out: Vec<(String, Vec<usize>, Vec<f32>)>,
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor")
}
fn host1(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor")
}

impl ParamVisitor for Saver {
    fn linear(&mut self, key: &str, m: &mut Linear) {
        let [din, dout] = m.weight.dims();
        let w = host(m.weight.val().transpose());
        self.out.push((format!("{key}.weight"), vec![dout, din], w));
        if let Some(b) = &m.bias {
            self.out
                .push((format!("{key}.bias"), vec![dout], host1(b.val())));
        }
    }
    fn layer_norm(&mut self, key: &str, m: &mut LayerNorm) {
        let [d] = m.gamma.dims();
        self.out
            .push((format!("{key}.weight"), vec![d], host1(m.gamma.val())));
        let b = m
            .beta
            .as_ref()
            .map(|b| host1(b.val()))
            .unwrap_or_else(|| vec![0.0; d]);
        self.out.push((format!("{key}.bias"), vec![d], b));
    }
    fn embedding(&mut self, key: &str, m: &mut Embedding) {
        let s = m.weight.dims();
        self.out
            .push((format!("{key}.weight"), s.to_vec(), host(m.weight.val())));
    }
    fn tensor2(&mut self, key: &str, p: &mut Param<Tensor<2>>) {
        let s = p.dims();
        self.out.push((key.to_string(), s.to_vec(), host(p.val())));
    }
    fn tensor3(&mut self, key: &str, p: &mut Param<Tensor<3>>) {
        let s = p.dims();
        let v = p
            .val()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 tensor");
        self.out.push((key.to_string(), s.to_vec(), v));
    }
}

/// Save the model as safetensors in the released layout (PyTorch names and shapes, `Wqkv`), so
/// the file loads back here and in Python (`safetensors.torch.load_file` + `load_state_dict`).
/// Written to a temporary file and renamed: never a half-written output.
pub fn save_safetensors(model: &ScGpt, path: impl AsRef<Path>) -> Result<()> {
    let mut s = Saver { out: Vec::new() };
    model.clone().visit_params(&mut s);
    write_tensors(path.as_ref(), s.out)
}

/// Write f32 tensors `(key, shape, values)` as safetensors, atomically (temp file + rename).
pub(crate) fn write_tensors(
    path: &Path,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(k, shape, v)| (k, shape, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, shape, b)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .expect("consistent view");
            (k.clone(), v)
        })
        .collect();
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert("producer".to_string(), "scllm".to_string());
    let data = safetensors::serialize(views, Some(meta))
        .map_err(|e| ModelError::Backend(format!("safetensors: {e}")))?;
    write_atomic(path, &data)
}

/// Write `data` to a temporary file next to `path` and rename it: never a half-written output.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("model"),
        std::process::id()
    ));
    std::fs::write(&tmp, data).map_err(|e| ModelError::file(&tmp, format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ModelError::file(path, format!("cannot write: {e}"))
    })
}

/// Every parameter of the model as `(key, PyTorch shape, values)`, in [`ScGpt::visit_params`] order.
pub fn state_dict(model: &ScGpt) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut s = Saver { out: Vec::new() };
    model.clone().visit_params(&mut s);
    s.out
}
