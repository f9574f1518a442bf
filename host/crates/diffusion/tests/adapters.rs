//! Adapters against peft on the tiny SD 1.x and 2.x fixtures (`scripts/make_fixtures.py
//! --adapters`): each format at weight 1 gives peft's text embeddings, UNet output and
//! two-step DDIM image, within the base parity tolerances (1e-4, 1e-4, 1e-3), on flex and on
//! wgpu (lavapipe in CI); strict loading refuses a file with keys that map onto no layer,
//! naming them; weight 0 and the model after a request are the base model bit for bit.
//!
//! Forms peft cannot write are checked against an equivalent file of a checked form, built
//! here from their definitions: kohya keys in the original LDM layout (renamed by matching
//! the tiny model's weights between its diffusers folder and its single file) against the
//! diffusers-named file, bit for bit; LoCon's Tucker middle (`lora_mid`) against the plain
//! 3x3 LoCon it factors; DoRA (`dora_scale`) against a LoKr holding the whole delta that
//! DoRA's definition gives, computed here in f64. A set kept merged between requests is
//! reused only for the same set, and never shows in a request for another.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{Tensors, assert_close, fixtures, host, load_tensors, max_diff, wgpu_or_skip};
use easel_diffusion::adapters::{Adapter, Family};
use easel_diffusion::{Device, GenerateParams, NoiseSource, Precision, StableDiffusion};

const FORMATS: [&str; 5] = ["lora", "locon", "loha", "lokr", "peft"];

struct Fixture {
    model: &'static str,
    base: &'static str,
    width: usize,
    height: usize,
}

const SD1: Fixture = Fixture {
    model: "tiny-sd",
    base: "reference",
    width: 64,
    height: 48,
};

const SD2: Fixture = Fixture {
    model: "tiny-sd2",
    base: "reference_sd2",
    width: 16,
    height: 8,
};

fn adapter(m: &StableDiffusion, fixture: &Fixture, name: &str) -> Arc<Adapter> {
    let path = fixtures().join(format!("adapters/{}/{name}.safetensors", fixture.model));
    let bytes = std::fs::read(path).expect("adapter fixture");
    Arc::new(Adapter::parse(name, &bytes, &m.adapter_target()).expect("usable adapter"))
}

fn token_rows(fixture: &Fixture) -> Vec<Vec<u32>> {
    let json = std::fs::read_to_string(fixtures().join(format!("{}.json", fixture.base))).unwrap();
    let mut rows = common::token_rows(&serde_json::from_str(&json).unwrap());
    rows.truncate(2);
    rows
}

struct NoNoise;

impl NoiseSource for NoNoise {
    fn draw(&mut self, _image: usize, _n: usize) -> Vec<f32> {
        panic!("DDIM draws no noise")
    }
}

/// Text embeddings, one UNet call and the two-step image, as the references hold them.
fn outputs(m: &StableDiffusion, fixture: &Fixture, refs: &Tensors) -> [Vec<f32>; 3] {
    let base = load_tensors(&format!("{}.safetensors", fixture.base));
    let clip = host(m.encode_ids(&token_rows(fixture)));
    let (s, ss) = &base["unet.sample"];
    let (c, cs) = &base["unet.context"];
    let x = m.tensor(s.clone(), [ss[0], ss[1], ss[2], ss[3]]);
    let ctx = m.tensor(c.clone(), [cs[0], cs[1], cs[2]]);
    let unet = host(m.unet(x, 981.0, &ctx));
    let json = std::fs::read_to_string(fixtures().join(format!("{}.json", fixture.base))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let params = GenerateParams {
        prompt: json["prompts"][0].as_str().unwrap().into(),
        negative_prompt: None,
        width: fixture.width,
        height: fixture.height,
        steps: 2,
        guidance_scale: 7.5,
        num_images: 1,
        scheduler: "DDIMScheduler".into(),
        strength: 1.0,
        init_image: None,
        latents: Some(refs["pipe.latents"].0.clone()),
    };
    let image = m
        .generate(&params, &mut NoNoise, &mut |_, _| true)
        .expect("generate")
        .remove(0);
    [clip, unet, image]
}

fn check(label: &str, got: &[Vec<f32>; 3], refs: &Tensors, name: &str) {
    for ((part, tolerance), got) in [
        ("clip.hidden", 1e-4),
        ("unet.out", 1e-4),
        ("pipe.image", 1e-3),
    ]
    .into_iter()
    .zip(got)
    {
        let want = &refs[&format!("{name}.{part}")].0;
        assert_close(&format!("{label} {name} {part}"), got, want, tolerance);
    }
}

/// Every format against peft, then the base outputs again: bit for bit those of the model
/// before any adapter was merged.
fn formats_match(label: &str, dev: &Device, fixture: &Fixture) {
    let mut m = StableDiffusion::load(&fixtures().join(fixture.model), dev).expect("load");
    let refs = load_tensors(&format!("adapters/{}/reference.safetensors", fixture.model));
    let before = outputs(&m, fixture, &refs);
    check(label, &before, &refs, "base");
    for name in FORMATS {
        let adapter = adapter(&m, fixture, name);
        let info = adapter.info().clone();
        assert!(info.tensors > 0 && info.rank == 2, "{name}: {info:?}");
        let (got, applied) = m
            .with_adapters(&[(adapter, 1.0)], |m| outputs(m, fixture, &refs))
            .unwrap();
        assert_eq!(applied[0].tensors_applied, info.tensors);
        check(label, &got, &refs, name);
    }
    let after = outputs(&m, fixture, &refs);
    assert_eq!(
        before, after,
        "{label}: the model changed after its requests"
    );
}

#[test]
fn every_format_matches_peft_on_flex() {
    formats_match("flex sd1", &Device::flex(), &SD1);
    formats_match("flex sd2", &Device::flex(), &SD2);
}

#[test]
fn every_format_matches_peft_on_wgpu() {
    let Some((dev, _)) = wgpu_or_skip(Precision::F32) else {
        return;
    };
    formats_match("wgpu sd1", &dev, &SD1);
    formats_match("wgpu sd2", &dev, &SD2);
}

#[test]
fn weight_zero_is_the_base_model_and_two_adapters_add_up() {
    let mut m = StableDiffusion::load(&fixtures().join("tiny-sd"), &Device::flex()).unwrap();
    let refs = load_tensors("adapters/tiny-sd/reference.safetensors");
    let base = outputs(&m, &SD1, &refs);
    let lora = adapter(&m, &SD1, "lora");
    let (zero, applied) = m
        .with_adapters(&[(lora.clone(), 0.0)], |m| outputs(m, &SD1, &refs))
        .unwrap();
    assert_eq!(zero, base);
    assert_eq!(applied[0].tensors_applied, 0);
    let locon = adapter(&m, &SD1, "locon");
    let (both, _) = m
        .with_adapters(&[(lora.clone(), 0.5), (locon.clone(), 0.5)], |m| {
            outputs(m, &SD1, &refs)
        })
        .unwrap();
    let (one, _) = m
        .with_adapters(&[(lora, 0.5)], |m| outputs(m, &SD1, &refs))
        .unwrap();
    assert_ne!(both[1], one[1], "the second adapter changed nothing");
    assert_ne!(one[1], base[1], "the adapter changed nothing");
}

#[test]
fn unmatched_keys_refuse_the_file_and_are_named() {
    let m = StableDiffusion::load(&fixtures().join("tiny-sd"), &Device::flex()).unwrap();
    let bytes = std::fs::read(fixtures().join("adapters/tiny-sd/bad_keys.safetensors")).unwrap();
    let refused = Adapter::parse("bad_keys", &bytes, &m.adapter_target())
        .err()
        .expect("refused");
    let text = refused.to_string();
    for key in [
        "lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight",
        "lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight",
        "lora_te_text_model_final_layer_norm.lora_down.weight",
    ] {
        assert!(text.contains(key), "{key} not named in: {text}");
    }
    assert_eq!(refused.unmatched_keys.len(), 3, "{text}");
    // An SD 2.x adapter does not fit the SD 1.x model's shapes.
    let bytes = std::fs::read(fixtures().join("adapters/tiny-sd2/lora.safetensors")).unwrap();
    let refused = Adapter::parse("sd2", &bytes, &m.adapter_target())
        .err()
        .expect("refused");
    assert!(!refused.mismatched.is_empty() || !refused.unmatched_keys.is_empty());
    assert_eq!(m.adapter_target().family(), Family::Sd1);
}

/// A NaN or an infinity in any tensor refuses the file, naming the tensor: used, it would
/// blacken every image, and the task would still succeed.
#[test]
fn values_that_are_not_finite_refuse_the_file() {
    let m = StableDiffusion::load(&fixtures().join("tiny-sd"), &Device::flex()).unwrap();
    for bad in [f32::NAN, f32::INFINITY] {
        let mut tensors = read_f32("adapters/tiny-sd/lora.safetensors");
        let (name, _, values) = tensors
            .iter_mut()
            .find(|(name, _, _)| name.ends_with("lora_up.weight"))
            .expect("an up matrix");
        values[0] = bad;
        let poisoned = name.clone();
        let refused = Adapter::parse("poisoned", &write_f32(&tensors), &m.adapter_target())
            .err()
            .expect("refused");
        let text = refused.to_string();
        assert!(
            text.contains("NaN or infinite") && text.contains(&poisoned),
            "{bad}: {text}"
        );
    }
}

/// A safetensors file's tensors as f32 values with their shapes, in file order.
fn read_f32(path: &str) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(fixtures().join(path)).expect("fixture");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = match view.dtype() {
                safetensors::Dtype::F16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                safetensors::Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                other => panic!("{name}: {other:?}"),
            };
            (name, view.shape().to_vec(), values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
    let exponent = ((bits >> 10) & 0x1f) as i32;
    let fraction = (bits & 0x3ff) as f32;
    sign * match exponent {
        0 => fraction * 2f32.powi(-24),
        31 => f32::INFINITY,
        e => (1.0 + fraction / 1024.0) * 2f32.powi(e - 15),
    }
}

/// An f32 safetensors file of `tensors`.
fn write_f32(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    write_f32_with(tensors, None)
}

/// [`write_f32`] with the safetensors header's `__metadata__`.
fn write_f32_with(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: Option<HashMap<String, String>>,
) -> Vec<u8> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize(views, &metadata).unwrap()
}

/// diffusers keeps a PEFT LoRA's `lora_alpha` in the file's metadata, not in `.alpha` tensors:
/// the fixture's tensors with `lora_alpha` half of `r` (or rsLoRA's `lora_alpha / √r` a half)
/// act as the plain file at weight 0.5, bit for bit; per-module patterns are refused.
#[test]
fn peft_metadata_scales_its_modules() {
    let mut m = StableDiffusion::load(&fixtures().join("tiny-sd"), &Device::flex()).unwrap();
    let refs = load_tensors("adapters/tiny-sd/reference.safetensors");
    let tensors = read_f32("adapters/tiny-sd/peft.safetensors");
    let plain = parse(&m, "peft", &write_f32(&tensors));
    let (half, _) = m
        .with_adapters(&[(plain, 0.5)], |m| outputs(m, &SD1, &refs))
        .unwrap();
    let with_configs = |configs: &serde_json::Value| {
        let metadata = HashMap::from([("lora_adapter_metadata".to_string(), configs.to_string())]);
        write_f32_with(&tensors, Some(metadata))
    };
    for configs in [
        serde_json::json!({"unet.r": 2, "unet.lora_alpha": 1, "text_encoder.r": 2, "text_encoder.lora_alpha": 1}),
        serde_json::json!({"unet.r": 4, "unet.lora_alpha": 1, "unet.use_rslora": true,
                           "text_encoder.r": 4, "text_encoder.lora_alpha": 1, "text_encoder.use_rslora": true}),
    ] {
        let scaled = parse(&m, "peft-alpha", &with_configs(&configs));
        let (got, _) = m
            .with_adapters(&[(scaled, 1.0)], |m| outputs(m, &SD1, &refs))
            .unwrap();
        assert_eq!(got, half, "{configs}");
    }
    let patterned = serde_json::json!({"unet.r": 2, "unet.lora_alpha": 2, "unet.alpha_pattern": {"down_blocks.0": 4}});
    let refused = Adapter::parse("patterned", &with_configs(&patterned), &m.adapter_target())
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("alpha_pattern"), "{refused}");
}

/// Files in diffusers' and PEFT's older layouts are the adapter their tensors make under
/// today's names, bit for bit: the attention processors' (`save_attn_procs`: bare UNet names,
/// `processor.to_q_lora.down.weight`; the text encoder's `self_attn.to_q_lora`), the
/// `lora_linear_layer` level, and PEFT's own `base_model.model.` prefix, for a UNet and for a
/// text model. Each is checked against the same tensors of the PEFT fixture under their
/// current names.
#[test]
fn older_diffusers_and_peft_layouts_are_the_same_adapter() {
    let mut m = StableDiffusion::load(&fixtures().join("tiny-sd"), &Device::flex()).unwrap();
    let refs = load_tensors("adapters/tiny-sd/reference.safetensors");
    let tensors = read_f32("adapters/tiny-sd/peft.safetensors");
    let old_factor = |key: &str| {
        key.replace(".lora_A.weight", ".down.weight")
            .replace(".lora_B.weight", ".up.weight")
    };
    let attention = |key: &str| {
        ["to_q", "to_k", "to_v", "to_out.0"].iter().any(|p| {
            key.contains(&format!(".attn1.{p}.lora_")) || key.contains(&format!(".attn2.{p}.lora_"))
        }) || key.contains(".self_attn.")
    };
    let processors = |key: &str| {
        let key = key.strip_prefix("unet.").unwrap_or(key);
        let mut renamed = old_factor(key);
        for (today, old) in [
            ("to_q", "to_q_lora"),
            ("to_k", "to_k_lora"),
            ("to_v", "to_v_lora"),
            ("to_out.0", "to_out_lora"),
        ] {
            renamed = renamed.replace(&format!(".{today}.down"), &format!(".processor.{old}.down"));
            renamed = renamed.replace(&format!(".{today}.up"), &format!(".processor.{old}.up"));
        }
        for (today, old) in [
            ("q_proj", "to_q_lora"),
            ("k_proj", "to_k_lora"),
            ("v_proj", "to_v_lora"),
            ("out_proj", "to_out_lora"),
        ] {
            renamed = renamed.replace(
                &format!(".self_attn.{today}."),
                &format!(".self_attn.{old}."),
            );
        }
        renamed
    };
    let linear_layer = |key: &str| {
        old_factor(key)
            .replace(".down.weight", ".lora_linear_layer.down.weight")
            .replace(".up.weight", ".lora_linear_layer.up.weight")
    };
    let peft_own = |key: &str| {
        key.replacen("unet.", "base_model.model.", 1).replacen(
            "text_encoder.text_model.",
            "base_model.model.text_model.",
            1,
        )
    };
    let of = |keep: &dyn Fn(&str) -> bool| -> Vec<_> {
        tensors.iter().filter(|(k, ..)| keep(k)).cloned().collect()
    };
    let renamed =
        |part: &[(String, Vec<usize>, Vec<f32>)], rename: &dyn Fn(&str) -> String| -> Vec<_> {
            part.iter()
                .map(|(k, shape, v)| (rename(k), shape.clone(), v.clone()))
                .collect()
        };
    let attention_part = of(&|k| attention(k));
    let unet_part = of(&|k| k.starts_with("unet."));
    let text_part = of(&|k| k.starts_with("text_encoder."));
    for (label, part, rename) in [
        (
            "attention processors",
            &attention_part,
            &processors as &dyn Fn(&str) -> String,
        ),
        ("lora_linear_layer", &attention_part, &linear_layer),
        ("PEFT's own UNet", &unet_part, &peft_own),
        ("PEFT's own text model", &text_part, &peft_own),
    ] {
        let old = renamed(part, rename);
        assert!(
            old.iter().all(|(k, ..)| !part.iter().any(|(p, ..)| p == k)),
            "{label}: nothing renamed"
        );
        let today = parse(&m, label, &write_f32(part));
        let older = parse(&m, label, &write_f32(&old));
        let (a, b) = (today.info(), older.info());
        assert!(a.unet_layers + a.text_encoder_layers > 0, "{label}");
        assert_eq!(
            (a.tensors, a.unet_layers, a.text_encoder_layers, a.rank),
            (b.tensors, b.unet_layers, b.text_encoder_layers, b.rank),
            "{label}"
        );
        let (want, _) = m
            .with_adapters(&[(today, 1.0)], |m| outputs(m, &SD1, &refs))
            .unwrap();
        let (got, _) = m
            .with_adapters(&[(older, 1.0)], |m| outputs(m, &SD1, &refs))
            .unwrap();
        assert_eq!(got, want, "{label}: another model");
    }
}

fn parse(m: &StableDiffusion, name: &str, bytes: &[u8]) -> Arc<Adapter> {
    Arc::new(
        Adapter::parse(name, bytes, &m.adapter_target())
            .unwrap_or_else(|why| panic!("{name} refused: {why}")),
    )
}

/// Small deterministic values in [-scale, scale).
fn values(n: usize, salt: u32, scale: f32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let x = i
                .wrapping_mul(2_654_435_761)
                .wrapping_add(salt.wrapping_mul(40_503));
            ((x >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn kohya(module: &str) -> String {
    module.replace('.', "_")
}

#[test]
fn ldm_named_kohya_keys_are_the_same_adapter() {
    let mut m = StableDiffusion::load(&fixtures().join("tiny-sd"), &Device::flex()).unwrap();
    let refs = load_tensors("adapters/tiny-sd/reference.safetensors");
    // The same random weight sits under its diffusers name in the folder and under its LDM
    // name in the single file: that pairs the names, independently of easel's map.
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let ldm: HashMap<Vec<u32>, String> = read_f32("tiny-sd.safetensors")
        .into_iter()
        .filter_map(|(name, shape, v)| {
            let module = name
                .strip_prefix("model.diffusion_model.")?
                .strip_suffix(".weight")?;
            (shape.len() >= 2).then(|| (bits(&v), module.to_string()))
        })
        .collect();
    let renames: HashMap<String, String> =
        read_f32("tiny-sd/unet/diffusion_pytorch_model.safetensors")
            .into_iter()
            .filter_map(|(name, shape, v)| {
                let module = name.strip_suffix(".weight")?;
                let original = ldm.get(&bits(&v)).filter(|_| shape.len() >= 2)?;
                Some((
                    format!("lora_unet_{}", kohya(module)),
                    format!("lora_unet_{}", kohya(original)),
                ))
            })
            .collect();
    assert!(renames.len() > 20, "{renames:?}");
    for name in ["lora", "locon"] {
        let diffusers_named = adapter(&m, &SD1, name);
        let mut renamed = 0;
        let tensors: Vec<_> = read_f32(&format!("adapters/tiny-sd/{name}.safetensors"))
            .into_iter()
            .map(|(key, shape, v)| {
                let (module, suffix) = key.split_once('.').unwrap();
                match renames.get(module) {
                    Some(original) => {
                        renamed += 1;
                        (format!("{original}.{suffix}"), shape, v)
                    }
                    None => (key, shape, v),
                }
            })
            .collect();
        assert!(
            tensors
                .iter()
                .any(|(k, ..)| k.starts_with("lora_unet_input_blocks_"))
                && tensors
                    .iter()
                    .any(|(k, ..)| k.starts_with("lora_unet_output_blocks_"))
                && tensors
                    .iter()
                    .any(|(k, ..)| k.starts_with("lora_unet_middle_block_")),
            "{name}: not every LDM block named"
        );
        let ldm_named = parse(&m, &format!("{name}_ldm"), &write_f32(&tensors));
        let (a, b) = (diffusers_named.info(), ldm_named.info());
        assert_eq!(
            (
                a.tensors,
                a.unet_layers,
                a.text_encoder_layers,
                &a.format,
                a.rank
            ),
            (
                b.tensors,
                b.unet_layers,
                b.text_encoder_layers,
                &b.format,
                b.rank
            ),
            "{name}: {renamed} keys renamed"
        );
        let (want, _) = m
            .with_adapters(&[(diffusers_named, 1.0)], |m| outputs(m, &SD1, &refs))
            .unwrap();
        let (got, _) = m
            .with_adapters(&[(ldm_named, 1.0)], |m| outputs(m, &SD1, &refs))
            .unwrap();
        assert_eq!(got, want, "{name}: LDM names give another model");
    }
}

/// `lora_mid` between a 1x1 down and up is the 3x3 down `Σ_j mid[i, j] · down[j]` (LyCORIS's
/// Tucker rebuild), on a Winograd convolution and on one after an upsample.
#[test]
fn tucker_locon_is_the_locon_it_factors() {
    let mut m = StableDiffusion::load(&fixtures().join("tiny-sd"), &Device::flex()).unwrap();
    let refs = load_tensors("adapters/tiny-sd/reference.safetensors");
    let unet = read_f32("tiny-sd/unet/diffusion_pytorch_model.safetensors");
    let shape_of = |param: &str| unet.iter().find(|(n, ..)| n == param).unwrap().1.clone();
    let rank = 2;
    let (mut tucker, mut dense) = (Vec::new(), Vec::new());
    for (salt, module) in [
        "down_blocks.0.resnets.0.conv1",
        "up_blocks.0.upsamplers.0.conv",
    ]
    .into_iter()
    .enumerate()
    {
        let shape = shape_of(&format!("{module}.weight"));
        let (out, inputs) = (shape[0], shape[1]);
        let salt = 10 * salt as u32;
        let down = values(rank * inputs, salt + 1, 0.3);
        let mid = values(rank * rank * 9, salt + 2, 0.3);
        let up = values(out * rank, salt + 3, 0.3);
        let mut folded = vec![0f32; rank * inputs * 9];
        for i in 0..rank {
            for r in 0..inputs {
                for t in 0..9 {
                    folded[(i * inputs + r) * 9 + t] = (0..rank)
                        .map(|j| mid[(i * rank + j) * 9 + t] * down[j * inputs + r])
                        .sum();
                }
            }
        }
        let key = |suffix: &str| format!("lora_unet_{}.{suffix}", kohya(module));
        let alpha = (key("alpha"), vec![], vec![1.0]);
        let up = (key("lora_up.weight"), vec![out, rank, 1, 1], up);
        tucker.extend([
            (key("lora_down.weight"), vec![rank, inputs, 1, 1], down),
            (key("lora_mid.weight"), vec![rank, rank, 3, 3], mid),
            up.clone(),
            alpha.clone(),
        ]);
        dense.extend([
            (key("lora_down.weight"), vec![rank, inputs, 3, 3], folded),
            up,
            alpha,
        ]);
    }
    let tucker = parse(&m, "tucker", &write_f32(&tucker));
    let dense = parse(&m, "dense", &write_f32(&dense));
    assert_eq!(tucker.info().format, ["LoCon (kohya)"]);
    assert_eq!((tucker.info().rank, tucker.info().unet_layers), (2, 2));
    let base = outputs(&m, &SD1, &refs);
    let (want, _) = m
        .with_adapters(&[(dense, 0.9)], |m| outputs(m, &SD1, &refs))
        .unwrap();
    let (got, _) = m
        .with_adapters(&[(tucker, 0.9)], |m| outputs(m, &SD1, &refs))
        .unwrap();
    assert!(
        max_diff(&want[1], &base[1]) > 1e-3,
        "the adapter changes too little"
    );
    assert_close("tucker unet", &got[1], &want[1], 1e-5);
    assert_close("tucker image", &got[2], &want[2], 1e-5);
}

/// DoRA's merged weight, from its definition, in f64: `V = W + scale · up @ down`, each
/// output row (or input channel) of `V` rescaled to its magnitude; returns `W' − W`.
fn dora_delta(
    base: &[f32],
    shape: &[usize],
    up: &[f32],
    down: &[f32],
    rank: usize,
    scale: f64,
    magnitudes: &[f32],
    per_output: bool,
) -> Vec<f32> {
    let out = shape[0];
    let inner: usize = shape[1..].iter().product();
    let taps = inner / shape[1];
    let mut v = vec![0f64; out * inner];
    for o in 0..out {
        for c in 0..inner {
            let product: f64 = (0..rank)
                .map(|r| up[o * rank + r] as f64 * down[r * inner + c] as f64)
                .sum();
            v[o * inner + c] = base[o * inner + c] as f64 + scale * product;
        }
    }
    let channel = |at: usize| {
        if per_output {
            at / inner
        } else {
            at % inner / taps
        }
    };
    let mut norms = vec![0f64; magnitudes.len()];
    for (at, x) in v.iter().enumerate() {
        norms[channel(at)] += x * x;
    }
    v.iter()
        .enumerate()
        .map(|(at, x)| {
            let c = channel(at);
            (magnitudes[c] as f64 / (norms[c].sqrt() + f32::EPSILON as f64) * x - base[at] as f64)
                as f32
        })
        .collect()
}

#[test]
fn dora_scale_follows_the_dora_definition_on_flex() {
    dora_matches("flex", &Device::flex());
}

/// On wgpu DoRA reads the layer's weight back from the device.
#[test]
fn dora_scale_follows_the_dora_definition_on_wgpu() {
    let Some((dev, _)) = wgpu_or_skip(Precision::F32) else {
        return;
    };
    dora_matches("wgpu", &dev);
}

fn dora_matches(label: &str, dev: &Device) {
    let mut m = StableDiffusion::load(&fixtures().join("tiny-sd"), dev).unwrap();
    let refs = load_tensors("adapters/tiny-sd/reference.safetensors");
    let mut weights: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for (file, prefix) in [
        ("tiny-sd/unet/diffusion_pytorch_model.safetensors", "unet."),
        ("tiny-sd/text_encoder/model.safetensors", "text_encoder."),
    ] {
        for (name, shape, v) in read_f32(file) {
            weights.insert(format!("{prefix}{name}"), (shape, v));
        }
    }
    let rank = 2;
    let (mut dora, mut whole) = (Vec::new(), Vec::new());
    // A text encoder linear with magnitudes per output row (LyCORIS's default), and a 3x3
    // convolution kept in Winograd's domain with magnitudes per input channel.
    for (salt, (param, kohya_name, per_output)) in [
        (
            "text_encoder.encoder.layers.0.self_attn.q_proj",
            "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
            true,
        ),
        (
            "unet.down_blocks.0.resnets.0.conv1",
            "lora_unet_down_blocks_0_resnets_0_conv1",
            false,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (shape, base) = &weights[&format!("{param}.weight")];
        let (out, inner) = (shape[0], base.len() / shape[0]);
        let salt = 10 * salt as u32;
        let down = values(rank * inner, salt + 1, 0.5);
        let up = values(out * rank, salt + 2, 0.5);
        let channels = if per_output { out } else { shape[1] };
        let magnitudes: Vec<f32> = values(channels, salt + 3, 0.5)
            .iter()
            .map(|v| 1.0 + v)
            .collect();
        let key = |suffix: &str| format!("{kohya_name}.{suffix}");
        let (down_shape, up_shape, dora_shape) = if shape.len() == 4 {
            (
                vec![rank, shape[1], shape[2], shape[3]],
                vec![out, rank, 1, 1],
                vec![1, channels, 1, 1],
            )
        } else {
            (vec![rank, inner], vec![out, rank], vec![channels, 1])
        };
        let delta = dora_delta(base, shape, &up, &down, rank, 0.5, &magnitudes, per_output);
        dora.extend([
            (key("lora_down.weight"), down_shape, down),
            (key("lora_up.weight"), up_shape, up),
            (key("alpha"), vec![], vec![1.0]),
            (key("dora_scale"), dora_shape, magnitudes),
        ]);
        whole.extend([
            (key("lokr_w1"), vec![1, 1], vec![1.0]),
            (key("lokr_w2"), shape.clone(), delta),
        ]);
    }
    let whole = parse(&m, "whole", &write_f32(&whole));
    let decomposed = parse(&m, "dora", &write_f32(&dora));
    assert!(
        decomposed
            .info()
            .format
            .iter()
            .any(|f| f == "DoRA (LyCORIS)"),
        "{:?}",
        decomposed.info()
    );
    let base = outputs(&m, &SD1, &refs);
    for weight in [1.0, 0.5] {
        let (want, _) = m
            .with_adapters(&[(whole.clone(), weight)], |m| outputs(m, &SD1, &refs))
            .unwrap();
        let (got, _) = m
            .with_adapters(&[(decomposed.clone(), weight)], |m| outputs(m, &SD1, &refs))
            .unwrap();
        assert!(
            max_diff(&want[1], &base[1]) > 1e-3,
            "DoRA changes too little"
        );
        assert!(
            max_diff(&want[0], &base[0]) > 1e-4,
            "DoRA's text part changes too little"
        );
        for (at, part) in ["clip", "unet", "image"].into_iter().enumerate() {
            let label = format!("{label} dora {weight} {part}");
            assert_close(&label, &got[at], &want[at], 1e-5);
        }
    }
    let (zero, _) = m
        .with_adapters(&[(decomposed, 0.0)], |m| outputs(m, &SD1, &refs))
        .unwrap();
    assert_eq!(zero, base, "DoRA at weight 0 is the base model");

    // Magnitudes that fit neither axis refuse the file, naming the module.
    let mut misfit = dora.clone();
    misfit.retain(|(k, ..)| k.starts_with("lora_te_"));
    misfit
        .iter_mut()
        .find(|(k, ..)| k.ends_with("dora_scale"))
        .unwrap()
        .1 = vec![1, 1, 8];
    let refused = Adapter::parse("misfit", &write_f32(&misfit), &m.adapter_target())
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("dora_scale"), "{refused}");
}

/// The provider's path: a set kept merged is reused for the same set only; another set,
/// none, or weight 0 gets exactly its own model; switching back merges afresh to the same
/// bits.
#[test]
fn a_kept_set_is_reused_for_the_same_set_only() {
    let mut m = StableDiffusion::load(&fixtures().join("tiny-sd"), &Device::flex()).unwrap();
    let refs = load_tensors("adapters/tiny-sd/reference.safetensors");
    let base = outputs(&m, &SD1, &refs);
    let lora = adapter(&m, &SD1, "lora");
    let loha = adapter(&m, &SD1, "loha");
    let run = |m: &mut StableDiffusion, set: &[(Arc<Adapter>, f32)]| {
        let before = m.adapter_merges();
        let (got, applied) = m
            .with_adapters_kept(set, |m| outputs(m, &SD1, &refs))
            .unwrap();
        assert_eq!(applied.len(), set.len());
        (got, m.adapter_merges() > before)
    };
    let one = [(lora.clone(), 0.8)];
    let (first, merged) = run(&mut m, &one);
    assert!(merged && first != base);
    let (again, merged) = run(&mut m, &one);
    assert!(!merged, "the same set was merged again");
    assert_eq!(again, first);
    let (none, merged) = run(&mut m, &[]);
    assert!(merged);
    assert_eq!(none, base, "no adapters after a kept set is the base model");
    let (zero, _) = run(&mut m, &[(lora.clone(), 0.0)]);
    assert_eq!(zero, base, "weight 0 after a kept set is the base model");
    let (other_weight, merged) = run(&mut m, &[(lora.clone(), 0.5)]);
    assert!(merged && other_weight != first);
    let (two, _) = run(&mut m, &[(lora.clone(), 0.8), (loha.clone(), 0.5)]);
    assert!(two != first);
    let (back, merged) = run(&mut m, &one);
    assert!(merged);
    assert_eq!(back, first, "merging the set afresh gives the same bits");
    // The restoring path takes a kept set out first.
    let (plain, _) = m.with_adapters(&[], |m| outputs(m, &SD1, &refs)).unwrap();
    assert_eq!(plain, base);
    assert_eq!(outputs(&m, &SD1, &refs), base);
}
