//! Times native SD 1.x on full-size shapes: seconds per UNet call (guided, batch 2), seconds
//! per image (text encoding + steps + VAE decode) and peak resident memory.
//!
//! Usage: `sd-bench <model folder or .safetensors> [--size 256,512] [--steps 2] [--device flex|wgpu]`
//! The random SD 1.5-shaped model comes from `scripts/bench_diffusers.py --save DIR`, which
//! also runs this binary after its own measurements (`--easel`) and prints the ratios; for
//! that it reads the `RESULT {json}` line printed per size.
//!
//! `--loras DIR` times adapters instead (`scripts/bench_adapters.py` writes random ones): each
//! `*.safetensors` of DIR is read against the model, then for sets of 0, 1, 4 and again 1 of
//! them (weight 0.8) it prints the time to merge the set, seconds per guided UNet call with it merged, and
//! the time to restore the model (`ADAPTERS {json}` lines); switching sets costs one restore
//! plus one merge. Then, as the `local` provider runs requests (sets kept merged between
//! them), sets of 1, 1 again, 4 and 4 again: the time until the model is ready to run
//! (`KEPT {json}` lines, `reused` when nothing was merged).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use easel_diffusion::adapters::Adapter;
use easel_diffusion::{GenerateParams, SeededNoise, StableDiffusion};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = PathBuf::from(args.get(1).ok_or_else(|| {
        anyhow::anyhow!("usage: sd-bench MODEL [--size N] [--steps N] [--device flex|wgpu]")
    })?);
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let sizes: Vec<usize> = opt("--size")
        .map(|s| s.split(',').map(|x| x.parse().unwrap()).collect())
        .unwrap_or(vec![256, 512]);
    let steps: usize = opt("--steps").map(|s| s.parse().unwrap()).unwrap_or(2);
    if let Some(d) = opt("--device") {
        // SAFETY: single-threaded at this point.
        unsafe { std::env::set_var("EASEL_SD_DEVICE", d) };
    }
    let (device, name) = easel_diffusion::select_device().map_err(anyhow::Error::msg)?;
    let t0 = Instant::now();
    let mut sd = StableDiffusion::load(&model, &device)?;
    println!("device: {name}");
    println!(
        "load: {:.1} s, peak RSS {:.0} MiB",
        t0.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    if let Some(dir) = opt("--loras") {
        return bench_adapters(&mut sd, Path::new(&dir), sizes[0], steps);
    }
    for size in sizes {
        let p = GenerateParams {
            prompt: "a photograph of an astronaut riding a horse".into(),
            negative_prompt: None,
            width: size,
            height: size,
            steps,
            guidance_scale: 7.5,
            num_images: 1,
            scheduler: "EulerDiscreteScheduler".into(),
            strength: 1.0,
            init_image: None,
            latents: None,
        };
        // warm-up: one UNet call at this size (shader compilation / allocation)
        let ctx = sd.encode_text(&["", "warm"]);
        let x = sd.tensor(
            vec![0.1; 2 * 4 * (size / 8) * (size / 8)],
            [2, 4, size / 8, size / 8],
        );
        let _ = sd.unet(x, 500.0, &ctx).into_data();
        let mut marks = Vec::new();
        let start = Instant::now();
        let mut last = Instant::now();
        let images = sd.generate(&p, &mut SeededNoise::new(1, 1), &mut |_, _| {
            marks.push(last.elapsed().as_secs_f64());
            last = Instant::now();
            true
        })?;
        let total = start.elapsed().as_secs_f64();
        // the first mark includes text encoding; average the rest when there are any
        let tail = if marks.len() > 1 {
            &marks[1..]
        } else {
            &marks[..]
        };
        let unet = tail.iter().sum::<f64>() / tail.len() as f64;
        let each: Vec<String> = marks.iter().map(|s| format!("{s:.2}")).collect();
        println!(
            "{size}x{size}: seconds per step, the first with text encoding: {}",
            each.join(", ")
        );
        assert_eq!(images[0].len(), size * size * 3);
        let peak = peak_rss_mib();
        println!(
            "{size}x{size}: {steps} steps, {unet:.2} s per UNet step (CFG batch 2), {total:.2} s per image, peak RSS {peak:.0} MiB"
        );
        println!(
            "RESULT {{\"size\": {size}, \"steps\": {steps}, \"unet_s\": {unet:.3}, \"image_s\": {total:.3}, \"peak_mib\": {peak:.0}}}"
        );
    }
    Ok(())
}

/// See the module docs (`--loras`).
fn bench_adapters(
    sd: &mut StableDiffusion,
    dir: &Path,
    size: usize,
    steps: usize,
) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    let target = sd.adapter_target();
    let mut adapters = Vec::new();
    for file in &files {
        let started = Instant::now();
        let bytes = std::fs::read(file)?;
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let adapter = Adapter::parse(&name, &bytes, &target)?;
        println!(
            "read {name}: {:.2} s, {} tensors, rank {}",
            started.elapsed().as_secs_f64(),
            adapter.info().tensors,
            adapter.info().rank
        );
        adapters.push(Arc::new(adapter));
    }
    let latent = size / 8;
    let ctx = sd.encode_text(&["", "warm"]);
    let x = sd.tensor(vec![0.1; 2 * 4 * latent * latent], [2, 4, latent, latent]);
    let step = |sd: &StableDiffusion| {
        let started = Instant::now();
        let _ = sd.unet(x.clone(), 500.0, &ctx).into_data();
        started.elapsed().as_secs_f64()
    };
    step(sd);
    // 1 again after 4: a switch once the merge buffers exist.
    for count in [0, 1, 4, 1].into_iter().filter(|&n| n <= adapters.len()) {
        let choices: Vec<_> = adapters[..count].iter().map(|a| (a.clone(), 0.8)).collect();
        let started = Instant::now();
        let mut merged_at = 0.0;
        let mut restore_from = Instant::now();
        let (times, _) = sd.with_adapters(&choices, |sd| {
            merged_at = started.elapsed().as_secs_f64();
            let times: Vec<f64> = (0..steps).map(|_| step(sd)).collect();
            restore_from = Instant::now();
            times
        })?;
        let restore = restore_from.elapsed().as_secs_f64();
        let per_step = times.iter().sum::<f64>() / times.len().max(1) as f64;
        println!(
            "{count} adapter(s): merge {merged_at:.3} s, {per_step:.3} s per UNet call, restore {restore:.3} s"
        );
        println!(
            "ADAPTERS {{\"adapters\": {count}, \"merge_s\": {merged_at:.4}, \"step_s\": {per_step:.4}, \"restore_s\": {restore:.4}}}"
        );
    }
    for count in [1, 1, 4, 4].into_iter().filter(|&n| n <= adapters.len()) {
        let choices: Vec<_> = adapters[..count].iter().map(|a| (a.clone(), 0.8)).collect();
        let merges = sd.adapter_merges();
        let started = Instant::now();
        let (ready, _) = sd.with_adapters_kept(&choices, |_| started.elapsed().as_secs_f64())?;
        let reused = sd.adapter_merges() == merges;
        let how = if reused { "same set, reused" } else { "merged" };
        println!("kept, {count} adapter(s): ready in {ready:.6} s ({how})");
        println!("KEPT {{\"adapters\": {count}, \"ready_s\": {ready:.6}, \"reused\": {reused}}}");
    }
    Ok(())
}
