//! Adapters against peft on the tiny SD 1.x and 2.x fixtures (`scripts/make_fixtures.py
//! --adapters`): each format at weight 1 gives peft's text embeddings, UNet output and
//! two-step DDIM image, within the base parity tolerances (1e-4, 1e-4, 1e-3), on flex and on
//! wgpu (lavapipe in CI); strict loading refuses a file with keys that map onto no layer,
//! naming them; weight 0 and the model after a request are the base model bit for bit.

mod common;

use std::sync::Arc;

use common::{Tensors, assert_close, fixtures, host, load_tensors, wgpu_or_skip};
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
