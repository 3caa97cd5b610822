//! Safetensors through MLX's own reader: tensors are lazy and read from disk when first evaluated.

use std::collections::HashMap;
use std::path::Path;

use cxx::UniquePtr;

use crate::array::{Array, to_list, wrap};
use crate::error::{Error, Result, mlx};
use crate::ffi::bridge as ffi;

/// The tensors and `__metadata__` of one safetensors file.
pub struct SafeTensors {
    map: UniquePtr<ffi::TensorMap>,
}

impl SafeTensors {
    pub fn load(path: impl AsRef<Path>) -> Result<SafeTensors> {
        let path = path.as_ref();
        let text = path
            .to_str()
            .ok_or_else(|| Error::invalid("load_safetensors", format!("path {} is not UTF-8", path.display())))?;
        Ok(SafeTensors { map: mlx("load_safetensors", ffi::load_safetensors(text))? })
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names = ffi::tensor_map_keys(&self.map);
        names.sort();
        names
    }

    pub fn get(&self, name: &str) -> Result<Array> {
        wrap("safetensors get", ffi::tensor_map_get(&self.map, name))
    }

    pub fn metadata(&self) -> HashMap<String, String> {
        pairs(ffi::tensor_map_metadata(&self.map))
    }
}

/// Writes `tensors` (evaluating them) with optional string metadata.
pub fn save_safetensors(
    path: impl AsRef<Path>,
    tensors: &[(&str, &Array)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let text = path
        .to_str()
        .ok_or_else(|| Error::invalid("save_safetensors", format!("path {} is not UTF-8", path.display())))?;
    let names: Vec<String> = tensors.iter().map(|(name, _)| name.to_string()).collect();
    let arrays: Vec<&Array> = tensors.iter().map(|(_, a)| *a).collect();
    let flat: Vec<String> = metadata.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect();
    mlx("save_safetensors", ffi::save_safetensors(text, &names, &to_list(&arrays), &flat))
}

pub(crate) fn pairs(flat: Vec<String>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.insert(k, v);
    }
    out
}
