//! Weight loading: safetensors files (f32, f16 or bf16) widened to f32 on the host, then
//! uploaded to the chosen [`Device`] one tensor at a time.
//!
//! Invariants:
//! - Every lookup uses the *diffusers* name of a parameter, prefixed by its component
//!   (`unet.`, `vae.`, `text_encoder.`); a single-file checkpoint is read through a
//!   [`Renamer`] (made by the `convert` module), which maps each diffusers name onto the
//!   original (LDM) key.
//! - PyTorch linear weights are `[out, in]`; [`Weights::linear`] transposes them to burn's
//!   `[in, out]` once, at load (on flex, contiguous in host memory, as the flex kernels
//!   take convolution and linear weights).
//! - A missing or misshapen tensor is an error naming the key, never a silent default.
//! - Each host tensor is moved to the device, not copied, and leaves the table as it goes,
//!   so loading holds every parameter once (host or device), not twice; a parameter can be
//!   taken only once.
//! - Every linear and convolution layer made here is entered in the model's
//!   [`LayerTable`] under its prefixed diffusers name, with its PyTorch weight shape, so
//!   adapters reach exactly the layers the model runs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::{Device, Tensor, TensorData};

use crate::adapters::layers::{LayerTable, LayerWeight};
use crate::nn::{ConvWeight, Shared};

/// One host-side tensor: its values widened to f32 and its shape.
#[derive(Debug, Clone)]
pub(crate) struct HostTensor {
    pub(crate) data: Vec<f32>,
    pub(crate) shape: Vec<usize>,
}

/// IEEE half to single precision (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal: value = m * 2^-24
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// A safetensors file as read: its float tensors (those whose names passed the filter), its
/// `__metadata__`, and the names of the tensors that are not floats and so were never read
/// as weights (integer buffers such as `position_ids`).
pub(crate) struct Safetensors {
    pub(crate) tensors: HashMap<String, HostTensor>,
    pub(crate) metadata: HashMap<String, String>,
    pub(crate) not_float: Vec<String>,
}

/// Reads the float tensors of a safetensors file whose names pass `keep`, plus the file's
/// `__metadata__`. The whole file is read, but only kept tensors are widened to f32, so a
/// checkpoint's EMA copy and training state cost their bytes once, while loading, and are
/// not kept. (Loading peaks at the file's size plus the f32 weights.)
pub(crate) fn read_safetensors(path: &Path, keep: impl Fn(&str) -> bool) -> Result<Safetensors> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_safetensors(&bytes, &path.display().to_string(), keep)
}

/// [`read_safetensors`] of a file already in memory; `label` names it in errors.
pub(crate) fn parse_safetensors(
    bytes: &[u8],
    label: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Safetensors> {
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("{label}: {e:?}"))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| anyhow!("{label}: {e:?}"))?;
    let mut tensors = HashMap::new();
    let mut not_float = Vec::new();
    for (name, view) in st.tensors() {
        if !keep(&name) {
            continue;
        }
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            safetensors::Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect(),
            // Integer buffers (position_ids) are never parameters.
            _ => {
                not_float.push(name);
                continue;
            }
        };
        tensors.insert(
            name,
            HostTensor {
                data,
                shape: view.shape().to_vec(),
            },
        );
    }
    Ok(Safetensors {
        tensors,
        metadata,
        not_float,
    })
}

/// Puts CLIP text-encoder keys under `<root>text_model.` when they were saved without it.
///
/// transformers before v5 (and most SD 1.x checkpoints) nest `CLIPTextModel` weights under
/// `text_model.`; v5 and some early checkpoints store the transformer's keys bare. The
/// loaders ask for the nested form only, so both layouts are mapped onto it here, once.
pub(crate) fn nest_text_model(tensors: &mut HashMap<String, HostTensor>, root: &str) {
    let nested = format!("{root}text_model.");
    let bare: Vec<String> = tensors
        .keys()
        .filter(|k| k.starts_with(root) && !k.starts_with(&nested))
        .cloned()
        .collect();
    for k in bare {
        if let Some(v) = tensors.remove(&k) {
            tensors.insert(format!("{nested}{}", &k[root.len()..]), v);
        }
    }
}

/// The console progress bar of a model load, by parameter count; drawn on stderr only when
/// it is a terminal (a service's log gets the one line the host writes when loading ends).
struct LoadProgress {
    total: usize,
    done: usize,
    drawn_percent: Option<usize>,
    visible: bool,
}

impl LoadProgress {
    fn new(total: usize) -> Self {
        use std::io::IsTerminal;
        Self {
            total: total.max(1),
            done: 0,
            drawn_percent: None,
            visible: std::io::stderr().is_terminal(),
        }
    }

    fn advance(&mut self, n: usize) {
        self.done += n;
        let percent = (self.done * 100 / self.total).min(100);
        if self.visible && self.drawn_percent != Some(percent) {
            self.drawn_percent = Some(percent);
            let bar = "#".repeat(percent / 4) + &" ".repeat(25 - percent / 4);
            eprint!("\rloading Stable Diffusion weights [{bar}] {percent:3}%");
            if percent == 100 {
                eprintln!();
            }
        }
    }
}

/// Maps a prefixed diffusers name to the key a single file stores it under.
pub(crate) type Renamer = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where a model's parameters come from.
pub(crate) struct Weights {
    tensors: RefCell<HashMap<String, HostTensor>>,
    /// Maps a prefixed diffusers name to the key actually stored (identity for folders).
    rename: Option<Renamer>,
    progress: RefCell<LoadProgress>,
    layers: RefCell<LayerTable>,
    pub(crate) device: Device,
}

impl Weights {
    /// `tensors` should hold only the model's parameters: the progress bar counts them all.
    pub(crate) fn new(
        tensors: HashMap<String, HostTensor>,
        rename: Option<Renamer>,
        device: Device,
    ) -> Self {
        let total = tensors.values().map(|t| t.data.len()).sum();
        Self {
            tensors: RefCell::new(tensors),
            rename,
            progress: RefCell::new(LoadProgress::new(total)),
            layers: RefCell::new(LayerTable::default()),
            device,
        }
    }

    /// The linear and convolution layers made so far.
    pub(crate) fn into_layers(self) -> LayerTable {
        self.layers.into_inner()
    }

    fn shared<T>(&self, prefix: &str, shape: Vec<usize>, weight: T) -> Shared<T>
    where
        Shared<T>: Into<LayerWeight>,
    {
        let shared = Shared::new(std::sync::RwLock::new(weight));
        self.layers
            .borrow_mut()
            .insert(prefix, shape, shared.clone().into());
        shared
    }

    fn key(&self, name: &str) -> String {
        match &self.rename {
            Some(f) => f(name).unwrap_or_else(|| name.to_string()),
            None => name.to_string(),
        }
    }

    /// The stored shape of a parameter, by diffusers name.
    pub(crate) fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let key = self.key(name);
        self.tensors
            .borrow()
            .get(&key)
            .map(|h| h.shape.clone())
            .ok_or_else(|| anyhow!("missing weight {name} (stored as {key})"))
    }

    /// Whether a parameter exists (and has not been taken yet).
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.tensors.borrow().contains_key(&self.key(name))
    }

    /// Takes a parameter out of the table onto the device as rank `D` with `shape`, which
    /// must hold as many elements as stored.
    pub(crate) fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>> {
        let h = self.take(name, shape.iter().product())?;
        Ok(Tensor::from_data(
            TensorData::new(h.data, shape),
            &self.device,
        ))
    }

    /// Takes a parameter out of the table as it is stored, checking its element count.
    fn take(&self, name: &str, elements: usize) -> Result<HostTensor> {
        let key = self.key(name);
        let mut table = self.tensors.borrow_mut();
        let stored = table
            .get(&key)
            .ok_or_else(|| anyhow!("missing weight {name} (stored as {key})"))?;
        if stored.data.len() != elements {
            bail!(
                "weight {name}: expected {elements} elements, found shape {:?}",
                stored.shape
            );
        }
        let h = table.remove(&key).expect("checked above");
        self.progress.borrow_mut().advance(h.data.len());
        Ok(h)
    }

    /// Takes a parameter in whatever shape it is stored, as rank `D`.
    pub(crate) fn any<const D: usize>(&self, name: &str) -> Result<Tensor<D>> {
        let stored = self.shape(name)?;
        if stored.len() != D {
            bail!("weight {name}: expected rank {D}, found {stored:?}");
        }
        self.tensor(name, std::array::from_fn(|i| stored[i]))
    }

    /// A PyTorch linear layer `prefix.weight` (`[out, in]`, or `[out, in, 1, 1]` when stored
    /// as a 1x1 convolution) transposed to `[in, out]`, and its bias when present. On flex the
    /// transpose is made contiguous in host memory, for the flex linear kernel.
    pub(crate) fn linear(&self, prefix: &str) -> Result<crate::nn::Linear> {
        let wname = format!("{prefix}.weight");
        let stored = self.shape(&wname)?;
        let (o, i) = (stored[0], stored[1..].iter().product());
        let bname = format!("{prefix}.bias");
        let bias = if self.contains(&bname) {
            Some(self.tensor(&bname, [o])?)
        } else {
            None
        };
        let transposed: Tensor<2> = self.tensor(&wname, [o, i])?.transpose();
        let weight = if self.device == Device::flex() {
            crate::nn::LinearWeight::Host {
                values: crate::flex::elements(transposed),
                out_features: o,
            }
        } else {
            crate::nn::LinearWeight::Device(transposed)
        };
        let weight = self.shared(prefix, stored, weight);
        Ok(crate::nn::Linear { weight, bias })
    }

    /// A 2D convolution `prefix.weight` / `prefix.bias`. On flex the weight stays in host
    /// memory, transformed for [`crate::flex::winograd`] where that suits its shape, else in
    /// its stored layout, which the flex convolution kernel multiplies directly.
    pub(crate) fn conv2d(
        &self,
        prefix: &str,
        stride: usize,
        padding: usize,
    ) -> Result<crate::nn::Conv2d> {
        self.conv2d_made(prefix, stride, padding, |weight| match weight {
            ConvWeight::Host { values, shape, .. }
                if crate::flex::winograd::suits(shape, stride, padding) =>
            {
                ConvWeight::Winograd {
                    transformed: crate::flex::winograd::transform_weights(&values, shape[0]),
                    out_channels: shape[0],
                }
            }
            other => other,
        })
    }

    /// The 3x3 convolution after a 2x upsample: on flex in the stored layout with its phase
    /// kernels (see `Conv2d::forward_upsampled2x`), which Winograd's transformed weights
    /// cannot give.
    pub(crate) fn conv2d_upsampling(&self, prefix: &str) -> Result<crate::nn::Conv2d> {
        self.conv2d_made(prefix, 1, 1, |weight| match weight {
            ConvWeight::Host { values, shape, .. } => ConvWeight::host_upsampling(values, shape),
            other => other,
        })
    }

    /// A convolution whose weight, as stored, `finish` brings to the form its layer runs.
    fn conv2d_made(
        &self,
        prefix: &str,
        stride: usize,
        padding: usize,
        finish: impl FnOnce(ConvWeight) -> ConvWeight,
    ) -> Result<crate::nn::Conv2d> {
        let wname = format!("{prefix}.weight");
        let shape = self.shape(&wname)?;
        let [o, i, kh, kw] = shape[..] else {
            bail!("weight {wname}: expected rank 4, found {shape:?}");
        };
        if kh != kw {
            bail!("weight {wname}: expected a square kernel, found {shape:?}");
        }
        let bname = format!("{prefix}.bias");
        let bias = if self.contains(&bname) {
            Some(self.tensor(&bname, [o])?)
        } else {
            None
        };
        let weight = if self.device == Device::flex() {
            ConvWeight::Host {
                values: self.take(&wname, o * i * kh * kw)?.data,
                shape: [o, i, kh, kw],
                phases: None,
            }
        } else {
            ConvWeight::Device(self.tensor(&wname, [o, i, kh, kw])?)
        };
        let weight = self.shared(prefix, shape, finish(weight));
        Ok(crate::nn::Conv2d {
            weight,
            bias,
            stride,
            padding,
        })
    }

    /// A group norm (`weight`, `bias` of size `channels`).
    pub(crate) fn group_norm(
        &self,
        prefix: &str,
        groups: usize,
        eps: f64,
    ) -> Result<crate::nn::GroupNorm> {
        let gamma: Tensor<1> = self.any(&format!("{prefix}.weight"))?;
        let beta: Tensor<1> = self.any(&format!("{prefix}.bias"))?;
        Ok(crate::nn::GroupNorm {
            gamma,
            beta,
            groups,
            eps,
        })
    }

    /// A layer norm over the last dimension.
    pub(crate) fn layer_norm(&self, prefix: &str, eps: f64) -> Result<crate::nn::LayerNorm> {
        let gamma: Tensor<1> = self.any(&format!("{prefix}.weight"))?;
        let beta: Tensor<1> = self.any(&format!("{prefix}.bias"))?;
        Ok(crate::nn::LayerNorm { gamma, beta, eps })
    }
}
