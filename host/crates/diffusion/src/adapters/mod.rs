//! Adapters (LoRA, LoCon, LoHa, LoKr) read strictly against the loaded model and merged
//! into it for one request at a time.
//!
//! - [`format`] groups a safetensors file's tensors into modules (kohya / A1111, LyCORIS,
//!   diffusers / PEFT names), [`kohya`] and [`peft`] map module names onto the model's
//!   [`layers`] (kohya's in the diffusers and in the original LDM layout), [`patch`] and
//!   [`lycoris`] turn factors into weight deltas, [`dora`] weight-decomposes them where a
//!   module says so, [`apply`] merges them for a request and puts the model's weights back
//!   after it, and [`library`] keeps a watched folder of adapters.
//!
//! Invariants:
//! - Strict: a file is usable only when every tensor belongs to a module that maps onto a
//!   layer of the loaded model (UNet or text encoder) with a fitting shape; otherwise it is
//!   [`Refused`], listing every key that did not map and every shape that disagreed.
//! - The base family (SD 1.x or 2.x) is judged from the adapter's own shapes (the width of
//!   the text it reads: 768 for SD 1.x, 1024 for SD 2.x); an adapter whose width matches the
//!   loaded model's is of the model's family (tiny test models have their own widths).
//! - An adapter is immutable once read; applying it never changes it.

pub mod apply;
mod dora;
mod format;
mod kohya;
pub(crate) mod layers;
pub mod library;
mod lycoris;
mod patch;
mod peft;
pub mod prompt;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use format::Kind;
use kohya::KohyaNames;
use layers::LayerTable;
use patch::ScaledPatch;

/// The Stable Diffusion generation an adapter or model belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Family {
    /// SD 1.x (CLIP ViT-L text, 768 wide).
    #[serde(rename = "SD 1.x")]
    Sd1,
    /// SD 2.x (OpenCLIP ViT-H text, 1024 wide).
    #[serde(rename = "SD 2.x")]
    Sd2,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Sd1 => "SD 1.x",
            Family::Sd2 => "SD 2.x",
        })
    }
}

/// What the loaded model offers adapters: its layers, family and text width.
pub struct AdapterTarget {
    pub(crate) layers: LayerTable,
    kohya: KohyaNames,
    family: Family,
    context_width: usize,
}

impl AdapterTarget {
    pub(crate) fn new(
        layers: LayerTable,
        family: Family,
        context_width: usize,
        ldm_unet: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let kohya = KohyaNames::of(&layers, ldm_unet);
        Self {
            layers,
            kohya,
            family,
            context_width,
        }
    }

    /// The loaded model's family.
    pub fn family(&self) -> Family {
        self.family
    }

    fn family_of_width(&self, width: usize) -> Option<Family> {
        match width {
            768 => Some(Family::Sd1),
            1024 => Some(Family::Sd2),
            w if w == self.context_width => Some(self.family),
            _ => None,
        }
    }
}

/// An adapter file as listed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AdapterInfo {
    /// The file stem; requests name the adapter by it.
    pub name: String,
    /// Its formats, e.g. `LoRA (kohya)`, `LoCon (kohya)`, `LoHa (LyCORIS)`, `LoKr (LyCORIS)`,
    /// `LoRA (diffusers/PEFT)`.
    pub format: Vec<String>,
    /// The family its shapes fit, when they tell.
    pub family: Option<Family>,
    /// The largest rank of its modules (0 for LoKr stored whole).
    pub rank: usize,
    /// Tensors in the file.
    pub tensors: usize,
    /// UNet layers it adapts.
    pub unet_layers: usize,
    /// Text encoder layers it adapts.
    pub text_encoder_layers: usize,
    /// sha256 of the file, hex.
    pub sha256: String,
}

/// Why a file cannot be used with the loaded model.
#[derive(Debug, Clone, Serialize, PartialEq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Refused {
    /// The family its shapes suggest, when they tell.
    pub family: Option<Family>,
    /// Keys that map onto no layer of the loaded model, each with why.
    pub unmatched_keys: Vec<String>,
    /// Modules whose shapes disagree with their layer's, each with the shapes.
    pub mismatched: Vec<String>,
    /// The file could not be read at all.
    pub unreadable: Option<String>,
}

impl Refused {
    fn describe(&self) -> String {
        if let Some(why) = &self.unreadable {
            return format!("unreadable adapter file: {why}");
        }
        let mut parts = Vec::new();
        if !self.unmatched_keys.is_empty() {
            parts.push(format!(
                "{} key(s) match no layer of the loaded model: {}",
                self.unmatched_keys.len(),
                first_few(&self.unmatched_keys)
            ));
        }
        if !self.mismatched.is_empty() {
            parts.push(format!(
                "{} module(s) do not fit their layer: {}",
                self.mismatched.len(),
                first_few(&self.mismatched)
            ));
        }
        parts.join("; ")
    }
}

/// The first few of `list`, and how many more (a whole model dropped in the adapter folder
/// has hundreds of keys; the listing at `GET /admin/loras` has them all).
fn first_few(list: &[String]) -> String {
    const SHOWN: usize = 5;
    let shown = list[..list.len().min(SHOWN)].join(", ");
    match list.len().saturating_sub(SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// A usable adapter: its listing and one patch per layer it adapts.
pub struct Adapter {
    info: AdapterInfo,
    patches: Vec<(String, ScaledPatch)>,
}

fn format_name(kind: Kind, conv: bool) -> &'static str {
    match (kind, conv) {
        (Kind::KohyaLoRa, false) => "LoRA (kohya)",
        (Kind::KohyaLoRa, true) => "LoCon (kohya)",
        (Kind::PeftLoRa, _) => "LoRA (diffusers/PEFT)",
        (Kind::LoHa, _) => "LoHa (LyCORIS)",
        (Kind::LoKr, _) => "LoKr (LyCORIS)",
    }
}

/// Whether a module is one whose input is the text embedding's width.
fn reads_text(module: &str) -> bool {
    [
        "attn2_to_k",
        "attn2.to_k",
        "self_attn_q_proj",
        "self_attn.q_proj",
    ]
    .iter()
    .any(|end| module.ends_with(end))
}

impl Adapter {
    /// Reads a safetensors adapter named `name` from `bytes`, strictly, for `target`.
    pub fn parse(name: &str, bytes: &[u8], target: &AdapterTarget) -> Result<Self, Refused> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let unreadable = |why: String| Refused {
            family: None,
            unmatched_keys: Vec::new(),
            mismatched: Vec::new(),
            unreadable: Some(why),
        };
        let crate::weights::Safetensors {
            tensors,
            metadata,
            not_float,
        } = crate::weights::parse_safetensors(bytes, name, |_| true)
            .map_err(|e| unreadable(format!("{e:#}")))?;
        // A NaN or an infinity would blacken every image the adapter touches, silently.
        let mut not_finite: Vec<&str> = tensors
            .iter()
            .filter(|(_, tensor)| tensor.data.iter().any(|value| !value.is_finite()))
            .map(|(key, _)| key.as_str())
            .collect();
        if !not_finite.is_empty() {
            not_finite.sort();
            return Err(unreadable(format!(
                "{} tensor(s) hold NaN or infinite values: {}",
                not_finite.len(),
                not_finite.join(", ")
            )));
        }
        // Tensors of other types (integers, f64) are not read as weights; in an adapter they
        // match nothing.
        let mut not_float: Vec<String> = not_float
            .into_iter()
            .map(|n| format!("{n} (not f32, f16 or bf16)"))
            .collect();
        not_float.sort();
        let tensor_count = tensors.len() + not_float.len();
        if tensor_count == 0 {
            return Err(unreadable("no float tensors".into()));
        }
        let peft_scales = peft::Scales::from_metadata(&metadata).map_err(unreadable)?;
        let grouped = format::group(tensors, peft::current_name);
        let family = grouped
            .modules
            .iter()
            .filter(|m| reads_text(&m.name))
            .find_map(|m| m.patch.patch.in_features())
            .and_then(|width| target.family_of_width(width));
        let mut unmatched = grouped.unmatched;
        unmatched.extend(not_float);
        let mut mismatched = Vec::new();
        let mut patches = Vec::new();
        let mut formats = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for mut module in grouped.modules {
            // A PEFT module's scale comes from the file's configs where no `.alpha` holds it.
            if module.kind == Kind::PeftLoRa
                && !module.keys.iter().any(|k| k.ends_with(".alpha"))
                && let Some(scale) = peft_scales.of(&module.name)
            {
                module.patch.scale = scale;
            }
            let layer = if KohyaNames::is_kohya(&module.name) {
                target.kohya.layer(&module.name).map(str::to_string)
            } else {
                peft::layer(&module.name, &target.layers)
            };
            let Some(layer) = layer.filter(|l| !seen.contains(l)) else {
                unmatched.extend(
                    module
                        .keys
                        .iter()
                        .map(|k| format!("{k} (no such layer, or adapted twice)")),
                );
                continue;
            };
            let shape = &target.layers.get(&layer).expect("mapped above").shape;
            if let Err(why) = module.patch.check(shape) {
                mismatched.push(format!("{}: {why:#}", module.name));
                continue;
            }
            formats.insert(format_name(module.kind, shape.len() == 4 && shape[2] > 1));
            if module.patch.dora_scale.is_some() {
                formats.insert("DoRA (LyCORIS)");
            }
            seen.insert(layer.clone());
            patches.push((layer, module.patch));
        }
        if !unmatched.is_empty() || !mismatched.is_empty() {
            return Err(Refused {
                family,
                unmatched_keys: unmatched,
                mismatched,
                unreadable: None,
            });
        }
        let count = |prefix: &str| {
            patches
                .iter()
                .filter(|(l, _)| l.starts_with(prefix))
                .count()
        };
        let info = AdapterInfo {
            name: name.to_string(),
            format: formats.into_iter().map(str::to_string).collect(),
            family: family.or(Some(target.family)),
            rank: patches
                .iter()
                .map(|(_, p)| p.patch.rank())
                .max()
                .unwrap_or(0),
            tensors: tensor_count,
            unet_layers: count("unet."),
            text_encoder_layers: count("text_encoder."),
            sha256,
        };
        Ok(Self { info, patches })
    }

    /// Its listing.
    pub fn info(&self) -> &AdapterInfo {
        &self.info
    }
}

/// An adapter and the weight a request gives it.
pub type Choice = (Arc<Adapter>, f32);
