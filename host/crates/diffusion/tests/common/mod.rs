//! What the parity tests share: the fixtures folder, f32 safetensors references, the
//! tolerance check and the wgpu device (or a skip).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use easel_diffusion::{Device, Precision, StableDiffusion};

pub fn fixtures() -> PathBuf {
    // Read at run time: a compile-time path goes stale when clones in different folders
    // share one build cache and this file did not change.
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run under cargo"))
        .join("tests/fixtures")
}

pub type Tensors = HashMap<String, (Vec<f32>, Vec<usize>)>;

/// An f32 safetensors fixture: values and shape per name.
pub fn load_tensors(name: &str) -> Tensors {
    let bytes = std::fs::read(fixtures().join(name)).expect("fixtures present");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut t = HashMap::new();
    for (k, v) in st.tensors() {
        let d: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        t.insert(k, (d, v.shape().to_vec()));
    }
    t
}

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Asserts `max |got - want| < tol` and logs the difference next to the reference's own
/// magnitude, so a near-zero reference (which would make any tolerance meaningless) shows.
pub fn assert_close(label: &str, got: &[f32], want: &[f32], tol: f32) {
    let d = max_diff(got, want);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!("{label}: max |diff| {d:.2e} (tolerance {tol:.0e}, max |reference| {scale:.2e})");
    assert!(
        scale > 10.0 * tol,
        "{label}: reference too small to test against"
    );
    assert!(d < tol, "{label}: max diff {d} >= {tol}");
}

pub fn host<const D: usize>(t: easel_diffusion::Tensor<D>) -> Vec<f32> {
    StableDiffusion::values(t).unwrap()
}

/// The wgpu device in `precision`, or `None` (the test skips) when there is none; with `CI`
/// set, a missing adapter fails the test instead.
pub fn wgpu_or_skip(precision: Precision) -> Option<(Device, String)> {
    match easel_diffusion::wgpu_device(Some(precision)) {
        Ok((dev, name)) => {
            eprintln!("wgpu device: {name}");
            Some((dev, name))
        }
        Err(e) if e.contains("does not support f16") => {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("CI is set but no wgpu adapter is available: {e}");
            }
            eprintln!("skipping wgpu test: no adapter ({e})");
            None
        }
    }
}

/// The `token_ids` rows of a reference's JSON.
pub fn token_rows(json: &serde_json::Value) -> Vec<Vec<u32>> {
    json["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}
