//! The tensor names of the adapter formats easel reads, grouped into one [`Module`] per
//! adapted layer.
//!
//! Formats, told apart by each module's own suffixes (a file may mix them):
//! - kohya / A1111 LoRA and LoCon: `<module>.lora_down.weight`, `.lora_up.weight`, `.alpha`
//!   (down-projections of convolutions may be 3x3, or 1x1 with a Tucker middle
//!   `.lora_mid.weight` `[rank, rank, k, k]`, as LyCORIS writes LoCon with `use_tucker`);
//! - LyCORIS LoHa: `.hada_w1_a/_b`, `.hada_w2_a/_b`, `.alpha`, with `.hada_t1/_t2` in the
//!   Tucker form;
//! - LyCORIS LoKr: `.lokr_w1` or `.lokr_w1_a/_b`, `.lokr_w2` or `.lokr_w2_a/_b` (with
//!   `.lokr_t2` in the Tucker form), `.alpha`;
//! - diffusers / PEFT: `.lora_A.weight` / `.lora_B.weight` (or diffusers' older
//!   `.lora.down.weight` / `.lora.up.weight`), `.alpha` when present; the older layouts'
//!   module names (attention processors, PEFT's own prefix) are read under today's
//!   (`super::peft::current_name`).
//!
//! Any of kohya's and LyCORIS's modules may be weight-decomposed (DoRA): a `.dora_scale`
//! tensor holds its magnitudes (see `super::dora`).
//!
//! Scales follow each format: `alpha / rank` where `alpha` is stored, else 1 (a PEFT file's
//! metadata may set it, see `super::peft`); a LoKr module whose factors are both stored whole
//! has no rank and scale 1.
//!
//! Invariant: every tensor of the file lands in exactly one module or in the unmatched list.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, bail};

use crate::weights::HostTensor;

use super::patch::{Factor, Patch, ScaledPatch};

/// The tensor suffixes easel reads, longest first where one ends another.
const SUFFIXES: &[&str] = &[
    "lora_down.weight",
    "lora_up.weight",
    "lora_mid.weight",
    "lora_A.weight",
    "lora_B.weight",
    "lora.down.weight",
    "lora.up.weight",
    "hada_w1_a",
    "hada_w1_b",
    "hada_w2_a",
    "hada_w2_b",
    "hada_t1",
    "hada_t2",
    "lokr_w1_a",
    "lokr_w1_b",
    "lokr_w2_a",
    "lokr_w2_b",
    "lokr_w1",
    "lokr_w2",
    "lokr_t2",
    "alpha",
    "dora_scale",
];

/// Which kind of adapter a module is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// kohya's `lora_down/up`.
    KohyaLoRa,
    /// PEFT's `lora_A/B`.
    PeftLoRa,
    /// LyCORIS LoHa.
    LoHa,
    /// LyCORIS LoKr.
    LoKr,
}

/// One adapted layer as the file names it.
pub(crate) struct Module {
    /// The name before the suffixes (`lora_unet_mid_block_attentions_0_proj_in`).
    pub(crate) name: String,
    /// Its tensors' full names.
    pub(crate) keys: Vec<String>,
    pub(crate) kind: Kind,
    pub(crate) patch: ScaledPatch,
}

/// The file's tensors grouped into modules; the keys no module could take, each with why.
pub(crate) struct Grouped {
    pub(crate) modules: Vec<Module>,
    pub(crate) unmatched: Vec<String>,
}

fn split(key: &str) -> Option<(&str, &'static str)> {
    SUFFIXES.iter().find_map(|suffix| {
        let module = key.strip_suffix(suffix)?.strip_suffix('.')?;
        (!module.is_empty()).then_some((module, *suffix))
    })
}

/// Groups `tensors` into modules (see the module docs), each key read under the name
/// `current` gives it (older layouts' names under today's); modules and refusals name the
/// file's own keys.
pub(crate) fn group(
    mut tensors: HashMap<String, HostTensor>,
    current: impl Fn(&str) -> std::borrow::Cow<'_, str>,
) -> Grouped {
    let mut by_module: BTreeMap<String, HashMap<&'static str, (String, HostTensor)>> =
        BTreeMap::new();
    let mut unmatched = Vec::new();
    let mut keys: Vec<String> = tensors.keys().cloned().collect();
    keys.sort();
    for key in keys {
        let tensor = tensors.remove(&key).expect("listed above");
        let name = current(&key);
        match split(&name) {
            Some((module, suffix)) => {
                by_module
                    .entry(module.to_string())
                    .or_default()
                    .insert(suffix, (key.clone(), tensor));
            }
            None => unmatched.push(format!("{key} (not a tensor name of a known format)")),
        }
    }
    let mut modules = Vec::new();
    for (name, parts) in by_module {
        let mut keys: Vec<String> = parts.values().map(|(k, _)| k.clone()).collect();
        keys.sort();
        match build(parts) {
            Ok((kind, patch)) => modules.push(Module {
                name,
                keys,
                kind,
                patch,
            }),
            Err(why) => unmatched.extend(keys.into_iter().map(|k| format!("{k} ({why})"))),
        }
    }
    Grouped { modules, unmatched }
}

fn build(mut parts: HashMap<&'static str, (String, HostTensor)>) -> Result<(Kind, ScaledPatch)> {
    let mut take = |suffix: &str| parts.remove(suffix).map(|(_, t)| t);
    let alpha = take("alpha").and_then(|a| a.data.first().copied());
    let dora_scale = take("dora_scale");
    let scaled = |rank: Option<usize>| match (alpha, rank) {
        (Some(alpha), Some(rank)) if rank > 0 => alpha / rank as f32,
        _ => 1.0,
    };
    let lora = |down: Option<HostTensor>, up: Option<HostTensor>| -> Result<ScaledPatch> {
        let (Some(down), Some(up)) = (down, up) else {
            bail!("LoRA module without both its down and up tensors");
        };
        let rank = down.shape.first().copied();
        Ok(ScaledPatch {
            patch: Patch::LoRa { down, up },
            scale: scaled(rank),
            dora_scale: None,
        })
    };
    let (kind, mut patch) =
        if let (Some(down), up) = (take("lora_down.weight"), take("lora_up.weight")) {
            match take("lora_mid.weight") {
                None => (Kind::KohyaLoRa, lora(Some(down), up)?),
                Some(core) => {
                    let Some(up) = up else {
                        bail!("LoRA module without both its down and up tensors");
                    };
                    let rank = down.shape.first().copied();
                    (
                        Kind::KohyaLoRa,
                        ScaledPatch {
                            patch: Patch::LoConTucker(tucker_locon(core, up, down)),
                            scale: scaled(rank),
                            dora_scale: None,
                        },
                    )
                }
            }
        } else if let (Some(down), up) = (take("lora_A.weight"), take("lora_B.weight")) {
            (Kind::PeftLoRa, lora(Some(down), up)?)
        } else if let (Some(down), up) = (take("lora.down.weight"), take("lora.up.weight")) {
            (Kind::PeftLoRa, lora(Some(down), up)?)
        } else if let (Some(w1a), Some(w1b), Some(w2a), Some(w2b)) = (
            take("hada_w1_a"),
            take("hada_w1_b"),
            take("hada_w2_a"),
            take("hada_w2_b"),
        ) {
            let rank = w1b.shape.first().copied();
            let factor = |a, b, core: Option<HostTensor>| match core {
                Some(core) => Factor::Tucker { core, a, b },
                None => Factor::Product(a, b),
            };
            let (t1, t2) = (take("hada_t1"), take("hada_t2"));
            if t1.is_some() != t2.is_some() {
                bail!("LoHa Tucker module with one core only");
            }
            let patch = Patch::LoHa(factor(w1a, w1b, t1), factor(w2a, w2b, t2));
            (
                Kind::LoHa,
                ScaledPatch {
                    patch,
                    scale: scaled(rank),
                    dora_scale: None,
                },
            )
        } else {
            let one = match (take("lokr_w1"), take("lokr_w1_a"), take("lokr_w1_b")) {
                (Some(w), None, None) => Factor::Full(w),
                (None, Some(a), Some(b)) => Factor::Product(a, b),
                _ => bail!("no complete LoRA, LoHa or LoKr module"),
            };
            let two = match (
                take("lokr_w2"),
                take("lokr_w2_a"),
                take("lokr_w2_b"),
                take("lokr_t2"),
            ) {
                (Some(w), None, None, None) => Factor::Full(w),
                (None, Some(a), Some(b), None) => Factor::Product(a, b),
                (None, Some(a), Some(b), Some(core)) => Factor::Tucker { core, a, b },
                _ => bail!("LoKr module without a complete second factor"),
            };
            let rank = two.rank().or(one.rank());
            let patch = Patch::LoKr(one, two);
            (
                Kind::LoKr,
                ScaledPatch {
                    patch,
                    scale: scaled(rank),
                    dora_scale: None,
                },
            )
        };
    if let Some(extra) = parts.keys().next() {
        bail!("{extra} does not belong with the module's other tensors");
    }
    if dora_scale.is_some() && kind == Kind::PeftLoRa {
        bail!("dora_scale is kohya's and LyCORIS's DoRA tensor, not PEFT's");
    }
    patch.dora_scale = dora_scale;
    Ok((kind, patch))
}

/// LoCon's Tucker form as a [`Factor::Tucker`]: `core` `[r, r, k, k]` between `up`
/// `[out, r(, 1, 1)]` and `down` `[r, in(, 1, 1)]`, so that
/// `W[o, i, kk] = Σ_{x,y} up[o, x] · core[x, y, kk] · down[y, i]` (LyCORIS's rebuild).
fn tucker_locon(core: HostTensor, up: HostTensor, down: HostTensor) -> Factor {
    let (out, rank) = (up.shape[0], up.data.len() / up.shape[0].max(1));
    let mut transposed = vec![0f32; up.data.len()];
    for o in 0..out {
        for x in 0..rank {
            transposed[x * out + o] = up.data[o * rank + x];
        }
    }
    let down_rank = down.shape[0];
    let down_cols = down.data.len() / down_rank.max(1);
    Factor::Tucker {
        core,
        a: HostTensor {
            data: transposed,
            shape: vec![rank, out],
        },
        b: HostTensor {
            data: down.data,
            shape: vec![down_rank, down_cols],
        },
    }
}
