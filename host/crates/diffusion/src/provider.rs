//! The `local` provider: easel's native Stable Diffusion behind the `Provider` trait.
//!
//! Invariants:
//! - One model, loaded once by [`LocalDiffusion::load`] and shared; requests queue on a
//!   mutex and run one at a time on a blocking thread.
//! - `submit` always finishes (`Submission::Finished`, one `Output::Bytes` per image); it is
//!   idempotent (same seed, same images; a task that names no seed gets one drawn from its
//!   id), so the engine may re-submit.
//! - Parameter names follow seed 003: `negative_prompt`, `width`, `height`,
//!   `num_inference_steps`, `guidance_scale`, `seed`, `num_images`, `scheduler`,
//!   `strength`, `output_format` (`png`, `jpg`, `jpeg`). Bad values are `InvalidRequest`.
//! - Cancellation is checked before the first step and between steps.
//! - Adapters: `loras: [{"name", "weight"}]` names adapters of the folder given to
//!   [`LocalDiffusion::with_adapter_dir`] (weight default 1.0). The front door checks them
//!   through `check_params` (unknown, refused or made for another family is a 4xx); the run
//!   merges them (see [`crate::adapters::apply`]) and keeps them merged for the next request
//!   if it names the same set, which then merges nothing
//!   ([`StableDiffusion::with_adapters_kept`]); the result's usage records what was applied
//!   (`usage.loras`). Without a folder, naming any adapter is a 4xx.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use easel_provider::{
    CallContext, GenerationRequest, LOCAL_PROVIDER, ModelInfo, Output, Provider, ProviderError,
    Submission,
};
use serde_json::{Map, Value, json};

use crate::adapters::library::{AdapterLibrary, Unusable};
use crate::adapters::{AdapterTarget, Choice};
use crate::pipeline::{Cancelled, GenerateParams, MAX_SIDE, SeededNoise, StableDiffusion};
use crate::schedulers::SCHEDULER_NAMES;

/// Native Stable Diffusion as easel's `local` provider.
#[derive(Clone)]
pub struct LocalDiffusion {
    model: Arc<Mutex<StableDiffusion>>,
    target: Arc<AdapterTarget>,
    adapters: Option<AdapterLibrary>,
    key: String,
    device: String,
    /// The model's own image side: the default width and height.
    side: u64,
}

/// Defaults when a parameter is absent.
const DEFAULT_STEPS: u64 = 30;
const DEFAULT_GUIDANCE: f64 = 7.5;
const DEFAULT_STRENGTH: f64 = 0.75;
const DEFAULT_SCHEDULER: &str = "DPMSolverMultistepScheduler";

impl LocalDiffusion {
    /// Loads the checkpoint at `path` (a diffusers folder or a single-file `.safetensors`,
    /// as the host reads from `EASEL_SD_MODEL`) on the device [`crate::select_device`]
    /// picks. The model key is the file stem or folder name. Runs on a blocking thread.
    pub async fn load(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let (device, name) = crate::select_device().map_err(anyhow::Error::msg)?;
            Self::load_on(&path, device, name)
        })
        .await?
    }

    /// Loads on an explicit device (tests, benchmarks); blocking.
    pub fn load_on(
        path: &Path,
        device: burn::tensor::Device,
        device_name: String,
    ) -> anyhow::Result<Self> {
        let model = StableDiffusion::load(path, &device)?;
        let stem = if path.is_dir() {
            path.file_name()
        } else {
            path.file_stem()
        };
        let key = stem
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sd".into());
        Ok(Self {
            side: model.native_side() as u64,
            target: model.adapter_target(),
            model: Arc::new(Mutex::new(model)),
            adapters: None,
            key,
            device: device_name,
        })
    }

    /// Serves the adapters of `dir` (created if absent), read now; blocking. Call
    /// [`LocalDiffusion::watch_adapters`] to follow later changes.
    pub fn with_adapter_dir(mut self, dir: impl Into<std::path::PathBuf>) -> anyhow::Result<Self> {
        self.adapters = Some(AdapterLibrary::open(dir, self.target.clone())?);
        Ok(self)
    }

    /// The adapter folder, when one was given.
    pub fn adapters(&self) -> Option<&AdapterLibrary> {
        self.adapters.as_ref()
    }

    /// Follows the adapter folder: after each change, this provider is published again
    /// through `sink`, so model listings show the adapters as they are now. Needs a tokio
    /// runtime; does nothing without a folder.
    pub fn watch_adapters(
        &self,
        sink: Arc<dyn easel_provider::ProviderSink>,
    ) -> anyhow::Result<()> {
        let Some(library) = &self.adapters else {
            return Ok(());
        };
        // The folder hands itself to the callback, so the provider kept here does not hold
        // the folder that holds the callback (no reference cycle).
        let mut bare = self.clone();
        bare.adapters = None;
        library.watch(move |library| {
            let mut me = bare.clone();
            me.adapters = Some(library.clone());
            sink.upsert(Arc::new(me))
        })
    }

    /// The adapters `params.loras` names, with their weights; or why one cannot be had, with
    /// its place in the list when the fault is an entry's.
    fn choices(&self, params: &Map<String, Value>) -> Result<Vec<Choice>, (Option<usize>, String)> {
        let Some(loras) = params.get("loras").filter(|v| !v.is_null()) else {
            return Ok(Vec::new());
        };
        let loras = loras.as_array().ok_or((
            None,
            "loras must be a list of {\"name\", \"weight\"}".to_string(),
        ))?;
        loras
            .iter()
            .enumerate()
            .map(|(index, lora)| self.choice(lora).map_err(|why| (Some(index), why)))
            .collect()
    }

    /// One entry of `params.loras`.
    fn choice(&self, lora: &Value) -> Result<Choice, String> {
        let name = lora
            .get("name")
            .and_then(Value::as_str)
            .ok_or("each of loras needs a name")?;
        let weight = match lora.get("weight") {
            None | Some(Value::Null) => 1.0,
            Some(w) => w.as_f64().ok_or("a lora's weight must be a number")?,
        };
        let library = self
            .adapters
            .as_ref()
            .ok_or_else(|| format!("unknown adapter {name}: this host has no adapter folder"))?;
        let adapter = library.get(name).map_err(|e: Unusable| e.to_string())?;
        Ok((adapter, weight as f32))
    }

    /// The device the model runs on, e.g. `wgpu (DiscreteGpu, Vulkan: ...)` or `flex (cpu)`.
    pub fn device_name(&self) -> String {
        self.device.clone()
    }

    /// The one model key this provider serves (`local/<key>`).
    pub fn model_key(&self) -> &str {
        &self.key
    }
}

fn params_schema(side: u64) -> Value {
    json!({
        "type": "object",
        "properties": {
            "negative_prompt": {"type": "string"},
            "width": {"type": "integer", "minimum": 64, "maximum": MAX_SIDE, "multipleOf": 8, "default": side},
            "height": {"type": "integer", "minimum": 64, "maximum": MAX_SIDE, "multipleOf": 8, "default": side},
            "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 500, "default": DEFAULT_STEPS},
            "guidance_scale": {"type": "number", "minimum": 0, "maximum": 50, "default": DEFAULT_GUIDANCE},
            "seed": {"type": "integer", "minimum": 0},
            "num_images": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
            "scheduler": {"type": "string", "enum": SCHEDULER_NAMES, "default": DEFAULT_SCHEDULER},
            "strength": {"type": "number", "minimum": 0, "maximum": 1, "default": DEFAULT_STRENGTH},
            "output_format": {"type": "string", "enum": ["png", "jpg", "jpeg"], "default": "png"},
            "loras": {
                "type": "array",
                "maxItems": 16,
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": false,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "weight": {"type": "number", "minimum": -10, "maximum": 10, "default": 1.0}
                    }
                }
            }
        }
    })
}

fn bad(msg: impl Into<String>) -> ProviderError {
    ProviderError::InvalidRequest(msg.into().into())
}

fn get_u64(p: &Map<String, Value>, k: &str, d: u64) -> Result<u64, ProviderError> {
    match p.get(k) {
        None | Some(Value::Null) => Ok(d),
        Some(v) => v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .ok_or_else(|| bad(format!("{k} must be a non-negative integer"))),
    }
}

fn get_f64(p: &Map<String, Value>, k: &str, d: f64) -> Result<f64, ProviderError> {
    match p.get(k) {
        None | Some(Value::Null) => Ok(d),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| bad(format!("{k} must be a number"))),
    }
}

fn get_str<'a>(p: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>, ProviderError> {
    match p.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("{k} must be a string"))),
    }
}

/// Encodes `height x width x 3` floats in [0, 1] as PNG or JPEG.
fn encode_image(img: &[f32], width: usize, height: usize, jpeg: bool) -> anyhow::Result<Vec<u8>> {
    let px: Vec<u8> = img
        .iter()
        .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect();
    let buf = image::RgbImage::from_raw(width as u32, height as u32, px)
        .ok_or_else(|| anyhow::anyhow!("bad image size"))?;
    let mut out = std::io::Cursor::new(Vec::new());
    if jpeg {
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95).encode_image(&buf)?;
    } else {
        buf.write_to(&mut out, image::ImageFormat::Png)?;
    }
    Ok(out.into_inner())
}

/// The seed of a task that names none: drawn from its id, so a re-submitted task (after a
/// restart) makes the same images. FNV-1a, since std's hasher may change between releases;
/// kept below 2^53 because the seed goes back in JSON, which JavaScript reads as a double.
fn seed_of_task(task_id: &str) -> u64 {
    let hash = task_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3)
        });
    hash & ((1 << 53) - 1)
}

/// Decodes an init image, resized to multiples of 8 (down-rounded, as diffusers does).
fn decode_init(bytes: &[u8]) -> Result<(Vec<f32>, usize, usize), ProviderError> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| bad(format!("init image: {e}")))?
        .to_rgb8();
    let (w, h) = (img.width() as usize / 8 * 8, img.height() as usize / 8 * 8);
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(bad(format!(
            "init image must be between 8x8 and {MAX_SIDE}x{MAX_SIDE}"
        )));
    }
    let img = if (w, h) != (img.width() as usize, img.height() as usize) {
        image::imageops::resize(
            &img,
            w as u32,
            h as u32,
            image::imageops::FilterType::Lanczos3,
        )
    } else {
        img
    };
    Ok((
        img.into_raw()
            .into_iter()
            .map(|v| v as f32 / 255.0)
            .collect(),
        w,
        h,
    ))
}

#[async_trait]
impl Provider for LocalDiffusion {
    fn id(&self) -> &str {
        LOCAL_PROVIDER
    }

    fn models(&self) -> Vec<ModelInfo> {
        let mut extra = Map::new();
        extra.insert("device".into(), Value::String(self.device.clone()));
        extra.insert("schedulers".into(), json!(SCHEDULER_NAMES));
        extra.insert("family".into(), json!(self.target.family()));
        let loras: Vec<_> = self
            .adapters
            .iter()
            .flat_map(|library| library.list())
            .filter_map(|status| status.info)
            .collect();
        extra.insert("loras".into(), json!(loras));
        vec![ModelInfo {
            key: self.key.clone(),
            name: format!("Stable Diffusion ({})", self.key),
            kind: "image".into(),
            capabilities: vec!["image.generate".into(), "image.edit".into()],
            params_schema: params_schema(self.side),
            price_hint: None,
            extra,
        }]
    }

    fn submit_is_idempotent(&self) -> bool {
        true
    }

    fn check_params(
        &self,
        _model: &str,
        params: &Map<String, Value>,
    ) -> Result<(), easel_provider::schema::InvalidParam> {
        self.choices(params).map(drop).map_err(|(index, why)| {
            easel_provider::schema::InvalidParam {
                param: Some("loras".into()),
                within: index.into_iter().map(Value::from).collect(),
                message: format!("Invalid parameter loras: {why}"),
            }
        })
    }

    /// img2img decodes its init image here, so remote inputs arrive as bytes.
    fn reads_input_bytes(&self) -> bool {
        true
    }

    async fn submit(
        &self,
        request: &GenerationRequest,
        ctx: &CallContext,
    ) -> Result<Submission, ProviderError> {
        if request.model != self.key {
            return Err(bad(format!("unknown model {}", request.model)));
        }
        let p = &request.params;
        let edit = match request.capability.as_str() {
            "image.generate" => false,
            "image.edit" => true,
            other => return Err(bad(format!("local does not serve {other}"))),
        };
        let format = match get_str(p, "output_format")?.unwrap_or("png") {
            "png" => false,
            "jpg" | "jpeg" => true,
            other => {
                return Err(bad(format!(
                    "output_format {other} is not png, jpg or jpeg"
                )));
            }
        };
        let seed = match p.get("seed") {
            None | Some(Value::Null) => seed_of_task(&ctx.task_id),
            Some(_) => get_u64(p, "seed", 0)?,
        };
        let (init_image, width, height) = if edit {
            let data = request
                .inputs
                .first()
                .and_then(|i| i.data.clone())
                .ok_or_else(|| bad("image.edit needs an input image (inputs[0])"))?;
            // Decoding and resizing a large image would stall the async thread it ran on.
            let (img, w, h) = tokio::task::spawn_blocking(move || decode_init(&data))
                .await
                .map_err(|e| ProviderError::Internal(format!("decoding the init image: {e}")))??;
            (Some(img), w, h)
        } else {
            (
                None,
                get_u64(p, "width", self.side)? as usize,
                get_u64(p, "height", self.side)? as usize,
            )
        };
        let params = GenerateParams {
            prompt: request.prompt.clone(),
            negative_prompt: get_str(p, "negative_prompt")?.map(str::to_string),
            width,
            height,
            steps: get_u64(p, "num_inference_steps", DEFAULT_STEPS)? as usize,
            guidance_scale: get_f64(p, "guidance_scale", DEFAULT_GUIDANCE)?,
            num_images: get_u64(p, "num_images", 1)? as usize,
            scheduler: get_str(p, "scheduler")?
                .unwrap_or(DEFAULT_SCHEDULER)
                .to_string(),
            strength: get_f64(p, "strength", DEFAULT_STRENGTH)?,
            init_image,
            latents: None,
        };
        params.validate().map_err(|e| bad(e.to_string()))?;
        let choices = self.choices(p).map_err(|(_, why)| bad(why))?;
        if ctx.cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        let model = self.model.clone();
        let cancel = ctx.cancel.clone();
        let progress = ctx.progress.clone();
        let n = params.num_images;
        let run = tokio::task::spawn_blocking(move || {
            // A panic in an earlier request poisons the lock, but the model is whole: a merge
            // that panicked was taken out again as it unwound (`Merged` restores on drop),
            // and a set kept merged is recorded with its key, which this request compares.
            let mut model = model.lock().unwrap_or_else(PoisonError::into_inner);
            if cancel.is_cancelled() {
                return Err(anyhow::Error::from(Cancelled));
            }
            let mut noise = SeededNoise::new(seed, n);
            let mut on_step = |done: usize, total: usize| {
                progress.report(done as f32 / total.max(1) as f32);
                !cancel.is_cancelled()
            };
            let (images, applied) = model.with_adapters_kept(&choices, |model| {
                model.generate(&params, &mut noise, &mut on_step)
            })?;
            let images = images?
                .iter()
                .map(|img| encode_image(img, params.width, params.height, format))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((images, applied))
        });
        let (images, applied) = match run.await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) if e.is::<Cancelled>() => return Err(ProviderError::Cancelled),
            Ok(Err(e)) => return Err(ProviderError::Internal(format!("{e:#}"))),
            Err(e) => {
                return Err(ProviderError::Internal(format!(
                    "generation task failed: {e}"
                )));
            }
        };
        let content_type = if format { "image/jpeg" } else { "image/png" };
        let outputs = images
            .into_iter()
            .map(|data| Output::Bytes {
                content_type: content_type.into(),
                data: Bytes::from(data),
            })
            .collect();
        let mut usage = Map::new();
        usage.insert("images".into(), json!(n));
        usage.insert("seed".into(), json!(seed));
        if !applied.is_empty() {
            usage.insert("loras".into(), json!(applied));
        }
        Ok(Submission::Finished {
            outputs,
            usage: Some(usage),
        })
    }
}
