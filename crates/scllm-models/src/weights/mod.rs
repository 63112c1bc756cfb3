//! Checkpoints in and out: reading `.pt`/`.bin` and safetensors files, loading them into any
//! family's model with a key-by-key report, and writing safetensors and `torch.save` files.

pub mod checkpoint;
pub mod load;
pub mod save;
pub mod torch_save;

pub use checkpoint::{Checkpoint, Format};
pub use load::{load_into, LoadReport, Skipped};
pub use save::{
    params, save_safetensors, save_safetensors_as, state_dict, write_tensors, SavedParam,
};
pub use torch_save::{save_pt, write_state_dict, write_state_dict_under, StateTensor};
