//! A model's parameters under their state-dict keys in PyTorch layout, and writing them as
//! safetensors.

use std::path::Path;

use burn::module::Param;
use burn::tensor::Tensor;

use crate::error::{ModelError, Result};
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

/// Write f32 tensors `(key, shape, values)` as safetensors, atomically.
pub fn write_tensors(path: &Path, tensors: Vec<(String, Vec<usize>, Vec<f32>)>) -> Result<()> {
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

/// [`scllm_fs::write_atomic`] with this crate's error.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    scllm_fs::write_atomic(path, data)
        .map_err(|e| ModelError::file(path, format!("cannot write: {e}")))
}
