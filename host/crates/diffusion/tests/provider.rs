//! The `local` provider end to end on the tiny fixture model (flex backend): params,
//! PNG/JPEG bytes, seeded determinism, batches, img2img input and cancellation.

use std::path::PathBuf;

use easel_diffusion::{Device, LocalDiffusion};
use easel_provider::{
    CallContext, GenerationRequest, InputMedia, Output, Provider, ProviderError, Submission,
};
use serde_json::json;

fn provider() -> LocalDiffusion {
    let path = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run under cargo"))
        .join("tests/fixtures/tiny-sd");
    LocalDiffusion::load_on(&path, Device::flex(), "flex (cpu)".into()).unwrap()
}

fn pixels(png: &[u8]) -> Vec<u8> {
    image::load_from_memory(png).unwrap().to_rgb8().into_raw()
}

fn request(p: &LocalDiffusion, params: serde_json::Value) -> GenerationRequest {
    GenerationRequest {
        capability: "image.generate".into(),
        model: p.model_key().into(),
        prompt: "a red fox".into(),
        params: params.as_object().unwrap().clone(),
        inputs: vec![],
    }
}

fn images(s: Submission) -> Vec<(String, Vec<u8>)> {
    match s {
        Submission::Finished { outputs, .. } => outputs
            .into_iter()
            .map(|o| match o {
                Output::Bytes { content_type, data } => (content_type, data.to_vec()),
                other => panic!("unexpected output {other:?}"),
            })
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

/// Width and height default to the side the model was trained at: the UNet's latent sample
/// size times the VAE's downscale (the tiny fixture: 8 x 8 = 64 pixels; SD 1.x: 512).
#[tokio::test]
async fn the_default_size_is_the_models_own() {
    let p = provider();
    let schema = &p.models()[0].params_schema["properties"];
    assert_eq!(
        (&schema["width"]["default"], &schema["height"]["default"]),
        (&json!(64), &json!(64))
    );
    let ctx = CallContext::detached("t-default-size");
    let answer = p
        .submit(
            &request(&p, json!({"num_inference_steps": 1, "seed": 1})),
            &ctx,
        )
        .await
        .unwrap();
    let (_, png) = &images(answer)[0];
    let img = image::load_from_memory(png).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));
}

#[tokio::test]
async fn generates_seeded_png_batches() {
    let p = provider();
    assert_eq!(p.id(), "local");
    let models = p.models();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].capabilities, vec!["image.generate", "image.edit"]);
    let ctx = CallContext::detached("t");
    let params = json!({"width": 64, "height": 48, "num_inference_steps": 2, "seed": 42, "num_images": 2,
                        "scheduler": "EulerAncestralDiscreteScheduler", "negative_prompt": "blurry"});
    let a = images(p.submit(&request(&p, params.clone()), &ctx).await.unwrap());
    let b = images(p.submit(&request(&p, params), &ctx).await.unwrap());
    assert_eq!(a.len(), 2);
    assert_eq!(a, b, "same seed, same images");
    assert_ne!(a[0].1, a[1].1, "image index changes the noise");
    let img = image::load_from_memory(&a[0].1).unwrap();
    assert_eq!((img.width(), img.height()), (64, 48));
    assert_eq!(a[0].0, "image/png");
}

/// Without a seed, a task's images are drawn from its id: a re-submitted task (the engine
/// retries after a restart) makes the same images, another task different ones.
#[tokio::test]
async fn a_task_without_a_seed_repeats_its_images() {
    let p = provider();
    let params = json!({"width": 64, "height": 64, "num_inference_steps": 1});
    let run = |task: &'static str| {
        let (p, params) = (&p, params.clone());
        async move {
            let ctx = CallContext::detached(task);
            images(p.submit(&request(p, params), &ctx).await.unwrap())
        }
    };
    let first = run("task-a").await;
    assert_eq!(first, run("task-a").await, "same task, same images");
    assert_ne!(first, run("task-b").await, "another task, other images");
}

/// Image `i` of a batch is the image a lone request with `seed + i` makes: the batch only
/// shares UNet calls. Batched matmuls may round differently, so pixels may differ by one
/// level, never more.
#[tokio::test]
async fn batch_image_index_is_seed_offset() {
    let p = provider();
    let ctx = CallContext::detached("t");
    let params = |seed: u64, n: u64| json!({"width": 64, "height": 64, "num_inference_steps": 2, "seed": seed, "num_images": n});
    let batch = images(p.submit(&request(&p, params(7, 3)), &ctx).await.unwrap());
    let lone = images(p.submit(&request(&p, params(9, 1)), &ctx).await.unwrap());
    let (a, b) = (pixels(&batch[2].1), pixels(&lone[0].1));
    let worst = a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
    assert!(
        worst <= 1,
        "batch image 2 (seed 7 + 2) vs seed 9 alone: max diff {worst}"
    );
    assert_ne!(
        pixels(&batch[1].1),
        b,
        "a different seed makes a different image"
    );
}

#[tokio::test]
async fn progress_every_step() {
    let p = provider();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let ctx = CallContext {
        progress: easel_provider::ProgressSink::new(move |f| sink.lock().unwrap().push(f)),
        ..CallContext::detached("t")
    };
    let params = json!({"width": 64, "height": 64, "num_inference_steps": 3, "seed": 5,
                        "scheduler": "HeunDiscreteScheduler"});
    images(p.submit(&request(&p, params), &ctx).await.unwrap());
    // Heun makes two UNet calls per step but the first: 3 steps, 5 calls, 5 reports.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(*seen.last().unwrap(), 1.0);
}

#[tokio::test]
async fn jpeg_edit_and_errors() {
    let p = provider();
    let ctx = CallContext::detached("t");
    let params = json!({"width": 64, "height": 64, "num_inference_steps": 1, "seed": 1, "output_format": "jpg"});
    let out = images(p.submit(&request(&p, params), &ctx).await.unwrap());
    assert_eq!(out[0].0, "image/jpeg");
    let init = out[0].1.clone();

    let mut req = request(
        &p,
        json!({"num_inference_steps": 4, "strength": 0.5, "seed": 3}),
    );
    req.capability = "image.edit".into();
    req.inputs = vec![InputMedia {
        kind: "image".into(),
        role: None,
        url: None,
        asset_id: None,
        content_type: Some("image/jpeg".into()),
        data: Some(init.into()),
    }];
    let edited = images(p.submit(&req, &ctx).await.unwrap());
    let img = image::load_from_memory(&edited[0].1).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));

    for bad in [
        json!({"width": 63}),
        json!({"scheduler": "Nope"}),
        json!({"num_images": 11}),
        json!({"output_format": "gif"}),
        json!({"scheduler": 3}),
        json!({"negative_prompt": ["x"]}),
        json!({"seed": -1}),
    ] {
        let e = p.submit(&request(&p, bad), &ctx).await.unwrap_err();
        assert!(matches!(e, ProviderError::InvalidRequest(_)), "{e:?}");
    }
}

#[tokio::test]
async fn cancellation_between_steps() {
    let p = provider();
    let ctx = CallContext::detached("t");
    let cancel = ctx.cancel.clone();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen2 = seen.clone();
    let ctx = CallContext {
        progress: easel_provider::ProgressSink::new(move |_| {
            seen2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            cancel.cancel();
        }),
        ..ctx
    };
    let params = json!({"width": 64, "height": 64, "num_inference_steps": 5, "seed": 1});
    let e = p.submit(&request(&p, params), &ctx).await.unwrap_err();
    assert_eq!(e, ProviderError::Cancelled);
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "stopped after the first step"
    );
}

/// A software wgpu adapter (lavapipe) loses to flex unless `EASEL_SD_DEVICE=wgpu` asks for
/// it; a hardware adapter wins. Either way wgpu stays reachable for tests afterwards.
#[test]
fn device_choice_prefers_hardware_wgpu_then_flex() {
    if std::env::var_os("EASEL_SD_DEVICE").is_some() {
        return; // forced: the default rule is not in play
    }
    let (_, chosen) = easel_diffusion::select_device().unwrap();
    match easel_diffusion::wgpu_device(None) {
        Ok((_, name)) if !name.starts_with("wgpu (Cpu") => assert_eq!(chosen, name),
        _ => assert_eq!(chosen, "flex (cpu)"),
    }
}
