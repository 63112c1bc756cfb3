//! The table of a model's parameters: key, PyTorch shape and part, in visiting order.

use burn::module::Param;
use burn::tensor::Tensor;

use crate::model::CellModel;
use crate::params::{torch_shape, Layout, ParamVisitor, Part};

/// One parameter of a model's table.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ParamInfo {
    pub key: String,
    /// PyTorch layout.
    pub shape: Vec<usize>,
    pub part: Part,
}

impl ParamInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

struct Lister(Vec<ParamInfo>);

impl ParamVisitor for Lister {
    fn param<const D: usize>(
        &mut self,
        key: &str,
        part: Part,
        layout: Layout,
        p: &mut Param<Tensor<D>>,
    ) {
        self.0.push(ParamInfo {
            key: key.to_string(),
            shape: torch_shape(layout, p),
            part,
        });
    }
}

/// Every parameter of `model` with its key, PyTorch shape and part, in visiting order.
pub fn param_table<M: CellModel>(model: &M) -> Vec<ParamInfo> {
    let mut l = Lister(Vec::new());
    model.clone().visit_params(&mut l);
    l.0
}
