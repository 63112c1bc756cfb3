//! A model's parameters under their state-dict keys in PyTorch layout, and writing them as
//! safetensors.

use std::collections::HashSet;
use std::path::Path;

use burn::module::Param;
use burn::tensor::Tensor;

use crate::error::{ModelError, Result};
use crate::nn::{Linear, Precision};
use crate::params::{torch_shape, Layout, ParamVisitor, Part};
use crate::CellModel;

/// One parameter: key, PyTorch shape, values, and its part of the model.
pub struct SavedParam {
    pub key: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub part: Part,
}

struct Saver(Vec<SavedParam>);

impl ParamVisitor for Saver {
    fn param<const D: usize>(
        &mut self,
        key: &str,
        part: Part,
        layout: Layout,
        p: &mut Param<Tensor<D>>,
    ) {
        let shape = torch_shape(layout, p);
        let t = p.val();
        let t = match layout {
            Layout::AsIs => t,
            Layout::Transposed => t.transpose(),
        };
        let data = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 tensor");
        self.0.push(SavedParam {
            key: key.to_string(),
            shape,
            data,
            part,
        });
    }
}

/// Every parameter of `model` with its part, in visiting order.
pub fn params<M: CellModel>(model: &M) -> Vec<SavedParam> {
    let mut s = Saver(Vec::new());
    model.clone().visit_params(&mut s);
    s.0
}

/// Every parameter of the model as `(key, PyTorch shape, values)`, in visiting order.
pub fn state_dict<M: CellModel>(model: &M) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    params(model)
        .into_iter()
        .map(|p| (p.key, p.shape, p.data))
        .collect()
}

/// Save the model as safetensors in its reference layout (PyTorch names and shapes), so the
/// file loads back here and in Python (`safetensors.torch.load_file` + `load_state_dict`).
/// Written to a temporary file and renamed: never a half-written output.
pub fn save_safetensors<M: CellModel>(model: &M, path: impl AsRef<Path>) -> Result<()> {
    write_tensors(path.as_ref(), state_dict(model))
}

/// [`save_safetensors`] with the weights of the linear layers that reduced-precision inference
/// converts ([`crate::nn::Linear::set_precision`]) stored as `precision`: bf16 (round to
/// nearest even; half the bytes; every loader here and `torch` reads it, and `--precision
/// bf16` then converts it losslessly). Everything else stays f32. int8 has no layout that
/// PyTorch or scllm's loaders read, and converting at load takes well under a second: refused.
pub fn save_safetensors_as<M: CellModel>(
    model: &M,
    path: impl AsRef<Path>,
    precision: Precision,
) -> Result<()> {
    let narrow = match precision {
        Precision::F32 => HashSet::new(),
        Precision::Bf16 => reduced_weight_keys(model),
        Precision::Int8 => {
            return Err(ModelError::Invalid(
                "int8 weights cannot be saved: no checkpoint layout that PyTorch or scllm loads                  holds them; save f32 or bf16 and give --precision int8 when embedding (the                  conversion takes well under a second at load)"
                    .into(),
            ))
        }
    };
    write_tensors_narrow(path.as_ref(), state_dict(model), &narrow)
}

/// The state-dict keys of the weights [`crate::nn::Linear::set_precision`] converts.
fn reduced_weight_keys<M: CellModel>(model: &M) -> HashSet<String> {
    struct Keys(HashSet<String>);
    impl ParamVisitor for Keys {
        fn param<const D: usize>(&mut self, _: &str, _: Part, _: Layout, _: &mut Param<Tensor<D>>) {
        }
        fn linear_layer(&mut self, key: &str, m: &mut Linear) {
            if m.converts() {
                self.0.insert(format!("{key}.weight"));
            }
        }
    }
    let mut k = Keys(HashSet::new());
    model.clone().visit_params(&mut k);
    k.0
}

/// Write f32 tensors `(key, shape, values)` as safetensors, atomically.
pub fn write_tensors(path: &Path, tensors: Vec<(String, Vec<usize>, Vec<f32>)>) -> Result<()> {
    write_tensors_narrow(path, tensors, &HashSet::new())
}

/// [`write_tensors`] with the tensors named in `bf16` stored as bf16.
fn write_tensors_narrow(
    path: &Path,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    bf16: &HashSet<String>,
) -> Result<()> {
    use safetensors::Dtype;
    let bytes: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = tensors
        .into_iter()
        .map(|(k, shape, v)| {
            if bf16.contains(&k) {
                let b = v
                    .iter()
                    .flat_map(|&x| gemmkit::bf16::from_f32(x).to_bits().to_le_bytes())
                    .collect();
                (k, shape, Dtype::BF16, b)
            } else {
                let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                (k, shape, Dtype::F32, b)
            }
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, shape, dt, b)| {
            let v = safetensors::tensor::TensorView::new(*dt, shape.clone(), b)
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

/// [`scllm_fs::write_atomic`] with this crate's error.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    scllm_fs::write_atomic(path, data)
        .map_err(|e| ModelError::file(path, format!("cannot write: {e}")))
}
