//! Turns a provider's outputs into assets the client owns.
//!
//! Invariants:
//! - Vendor links are copied into the asset store before the task succeeds (they expire); a
//!   link that cannot be copied fails the task with the link's host and the reason, rather
//!   than handing the client a dead URL. Passing trouble (a 5xx, a 429, a dropped connection)
//!   is tried again over about half a minute first ([`copy_wait`]); a web page or a JSON message served in place of
//!   the file (a store's error page with a success status, whatever type it is served as),
//!   or, where an image is expected, bytes of no image format served as no image type, fail
//!   it at once. The exception is a by-product: a link declared as
//!   another kind of file than the task's capability makes (a video's cover or last frame),
//!   beside an output of the kind it makes. One that cannot be copied is left out with a
//!   warning, and the task succeeds with the rest: the client paid for the video, not for its
//!   cover.
//! - A link is fetched only from a host the provider's own requests may reach
//!   (`Provider::output_link_refused`: a plugin's allowlist ∩ the operator's), through the
//!   no-SSRF client, and the same check applies to every redirect hop, so a plugin cannot
//!   send data to another host by returning it in a link.
//! - A body streams into the asset store chunk by chunk and is cut off past
//!   [`MAX_OUTPUT_BYTES`]; at most [`CONCURRENT_DOWNLOADS`] downloads run at once per process.
//! - The assets a task's outputs make are the ones its `outputs` name: those stored before an
//!   output that could not be, or for a task that ended meanwhile (cancelled while its files
//!   were copied), are removed again.
//! - A task succeeds only with an output that can be what its capability makes: none at all,
//!   or only outputs that say they are another kind (a text for an image), fail it.
//! - A task whose API promised an image format its model does not produce itself
//!   (`image_format` in its extra fields, a content type) has its images in other formats
//!   converted before they are stored; one the host cannot read is stored as it came.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{
    assets::{Asset, NewFile, extension_of, kind_of},
    engine::{
        Engine,
        lifecycle::{self, Outcome},
        provider::{Capability, Output, Usage},
        task::Task,
    },
    net::{HostCheck, content_type_of},
};

/// Largest vendor file the host copies, bytes.
const MAX_OUTPUT_BYTES: u64 = 512 * 1024 * 1024;

/// Downloads at once, per process. Memory no longer bounds them (each holds one chunk), so
/// this bounds sockets and disk writes: enough to keep a wide link busy with vendor files of
/// tens of megabytes, few enough that 256 polls finishing together do not open 256 streams
/// to the disk at once; a poll waiting here holds its poll slot, which is the back-pressure.
const CONCURRENT_DOWNLOADS: usize = 16;

static DOWNLOADS: Semaphore = Semaphore::const_new(CONCURRENT_DOWNLOADS);

/// Why the outputs cannot become the task's result: the task's fault, not the host's (a link
/// that could not be copied, or no output of the kind the capability makes).
#[derive(Debug)]
struct Unusable(String);

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unusable {}

/// Stores the outputs, then marks the task succeeded with them; a link that cannot be copied
/// marks it failed with the reason instead, unless it is a by-product (left out). `task` is as
/// its holder took it, and ends only while still held so (see [`lifecycle::finish_held`]).
/// Files stored for a task that ended meanwhile (a cancel, or a recovery elsewhere) are
/// removed again: nothing would name them.
pub async fn succeed(
    engine: &Engine,
    task: &Task,
    outputs: Vec<Output>,
    usage: Option<Usage>,
) -> anyhow::Result<()> {
    let (outcome, stored) = match store(engine, task, outputs).await {
        Ok((values, stored)) => (
            Outcome::Succeeded {
                outputs: values,
                usage: usage.map(serde_json::Value::Object),
            },
            stored,
        ),
        Err(error) => match error.downcast::<Unusable>() {
            Ok(Unusable(reason)) => (Outcome::Failed(reason), Vec::new()),
            Err(error) => return Err(error),
        },
    };
    if lifecycle::finish_held(engine, task, outcome)
        .await?
        .is_none()
        && !stored.is_empty()
    {
        tracing::info!(task = %task.id, "the task ended while its outputs were stored; removing them");
        engine.assets().remove_all(&stored).await;
    }
    Ok(())
}

/// Stores every output of `task`: the values for its `outputs` column and the assets made.
/// A by-product that cannot be copied is left out; when any other output cannot be stored,
/// those stored before it are removed.
async fn store(
    engine: &Engine,
    task: &Task,
    outputs: Vec<Output>,
) -> anyhow::Result<(Vec<serde_json::Value>, Vec<Asset>)> {
    let mut values = Vec::with_capacity(outputs.len());
    let mut stored = Vec::new();
    let image_format = image_format(task);
    let makes = Capability::parse(&task.capability).map(Capability::makes);
    if let Some(makes) = makes {
        missing_kind(makes, &outputs).map_err(Unusable)?;
    }
    // By-products exist only beside an output of the kind the capability makes.
    let made = makes.filter(|&made| outputs.iter().any(|o| declared_kind(o) == Some(made)));
    for (index, output) in outputs.into_iter().enumerate() {
        let by_product = is_by_product(made, &output);
        match store_one(engine, task, index, output, image_format).await {
            Ok(Stored::Text(value)) => values.push(value),
            Ok(Stored::File(asset)) => {
                values.push(serde_json::Value::String(asset.id.clone()));
                stored.push(asset);
            }
            Err(error) if by_product && error.is::<Unusable>() => {
                tracing::warn!(task = %task.id, %error, "a by-product of the task is left out");
            }
            Err(error) => {
                engine.assets().remove_all(&stored).await;
                return Err(error);
            }
        }
    }
    Ok((values, stored))
}

/// Refuses outputs that cannot be what was asked for: none at all, or only outputs that say
/// they are another kind of media (a text for an image, an image for a video). An output of
/// no stated kind, or a generic file, may be anything, so it passes.
fn missing_kind(makes: &str, outputs: &[Output]) -> Result<(), String> {
    if outputs.is_empty() {
        return Err(format!(
            "the provider finished without any output (the task makes {makes})"
        ));
    }
    let kinds: Vec<_> = outputs.iter().map(declared_kind).collect();
    let media = |kind: &Option<&str>| matches!(kind, Some("image" | "video" | "audio" | "text"));
    if kinds.iter().all(media) && !kinds.contains(&Some(makes)) {
        let said: Vec<_> = kinds.into_iter().flatten().collect();
        return Err(format!(
            "the provider answered {} where the task makes {makes}",
            said.join(", ")
        ));
    }
    Ok(())
}

/// The kind of file `output` says it is (`image`, `video`, `audio`, `file` or `text`), when
/// it says.
fn declared_kind(output: &Output) -> Option<&'static str> {
    match output {
        Output::Text(_) => Some("text"),
        Output::Bytes { content_type, .. } => Some(kind_of(content_type)),
        Output::Url { content_type, .. } => content_type.as_deref().map(kind_of),
    }
}

/// Whether `output` may be a by-product of a task whose outputs hold the kind of file it
/// `made` (see the module's invariants): a link declared as an image, a video or a sound when
/// the task makes another of those.
fn is_by_product(made: Option<&str>, output: &Output) -> bool {
    let media = ["image", "video", "audio"];
    let (Some(made), Output::Url { .. }) = (made, output) else {
        return false;
    };
    let kind = declared_kind(output).unwrap_or_default();
    media.contains(&made) && media.contains(&kind) && kind != made
}

/// One output as stored: text kept in the task's row, or a file made an asset.
enum Stored {
    Text(serde_json::Value),
    File(Asset),
}

/// Stores output `index` of `task`; an image is converted first when the task's API promised
/// `image_format` (a content type) and it came in another.
async fn store_one(
    engine: &Engine,
    task: &Task,
    index: usize,
    output: Output,
    image_format: Option<&'static str>,
) -> anyhow::Result<Stored> {
    let asset = match output {
        Output::Text(text) => return Ok(Stored::Text(serde_json::json!({ "text": text }))),
        Output::Bytes { content_type, data } => {
            let (content_type, data) = match conversion(&content_type, image_format) {
                Some(wanted) => convert(task, content_type, data, wanted).await,
                None => (content_type, data),
            };
            let name = output_name(task, index, &content_type);
            engine
                .assets()
                .put(new_file(task, &name, &content_type), &data)
                .await?
        }
        Output::Url { url, content_type } => {
            // A link declared as another kind is a by-product (a video's cover).
            let expects_image = content_type.as_deref().map_or_else(
                || task.capability.starts_with("image."),
                |declared| declared.starts_with("image/"),
            );
            let Copied {
                served_as,
                spooled,
                slot: _slot,
            } = copy_link(engine, task, &url, expects_image).await?;
            let content_type = content_type.unwrap_or(served_as);
            if conversion(&content_type, image_format).is_some() {
                // Converted whole, as an output that came as bytes.
                let data = spooled.into_bytes().await?;
                let output = Output::Bytes { content_type, data };
                return Box::pin(store_one(engine, task, index, output, image_format)).await;
            }
            let name = output_name(task, index, &content_type);
            engine
                .assets()
                .adopt(new_file(task, &name, &content_type), spooled)
                .await?
        }
    };
    Ok(Stored::File(asset))
}

/// How long to wait before trying an output link again after `failed` attempts, or `None`
/// once it is given up: 1 s, doubling, six attempts in about half a minute. A CDN's passing
/// trouble (a 5xx, a 429, a dropped connection) must not lose a result the vendor already
/// made and charged for.
fn copy_wait(failed: u32) -> Option<Duration> {
    (failed < 6).then(|| Duration::from_secs(1 << (failed - 1).min(4)))
}

/// An output link's file, spooled, with the type its server gave it and the download slot it
/// holds until it is stored.
struct Copied {
    served_as: String,
    spooled: crate::assets::Spooled,
    slot: SemaphorePermit<'static>,
}

/// Copies output link `url` into a spooled file; tried again ([`copy_wait`]) while the
/// trouble looks passing, without a download slot while it waits. A link the allowlist
/// refuses, a 4xx, a file over the cap or an HTML page (a store's error page sent as a
/// success) fails at once.
async fn copy_link(
    engine: &Engine,
    task: &Task,
    url: &str,
    expects_image: bool,
) -> anyhow::Result<Copied> {
    let mut attempt = 1;
    loop {
        match copy_link_once(engine, task, url, expects_image).await {
            Ok(copied) => return Ok(copied),
            Err(trouble) => {
                let Some(wait) = copy_wait(attempt).filter(|_| trouble.passing) else {
                    return Err(trouble.error);
                };
                tracing::info!(task = %task.id, host = %host_in(url), error = %trouble.error, attempt, "copying an output link failed; trying again");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

/// Why one copy failed, and whether the trouble looks passing.
struct CopyFailed {
    error: anyhow::Error,
    passing: bool,
}

impl CopyFailed {
    fn lasting(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            passing: false,
        }
    }
}

async fn copy_link_once(
    engine: &Engine,
    task: &Task,
    url: &str,
    expects_image: bool,
) -> Result<Copied, CopyFailed> {
    let slot = DOWNLOADS.acquire().await.map_err(CopyFailed::lasting)?;
    let response = engine
        .guard()
        .open(url, Some(link_check(engine, task)))
        .await
        .map_err(|error| CopyFailed {
            passing: passing(&error),
            error: refused(url, error),
        })?;
    let served_as = content_type_of(&response);
    let web_page = served_as
        .parse::<mime::Mime>()
        .is_ok_and(|served| matches!(served.essence_str(), "text/html" | "application/xhtml+xml"));
    if web_page {
        return Err(CopyFailed::lasting(Unusable(format!(
            "Output link on {} answered a web page ({}), not the file",
            host_in(url),
            served_as.split(';').next().unwrap_or_default()
        ))));
    }
    if let Some(length) = response.content_length()
        && length > MAX_OUTPUT_BYTES
    {
        return Err(CopyFailed::lasting(too_large(url)));
    }
    let mut spooled = engine.assets().spool().await.map_err(CopyFailed::lasting)?;
    let mut chunks = response.bytes_stream();
    let mut head = Vec::with_capacity(HEAD_BYTES);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| CopyFailed {
            passing: true,
            error: refused(url, error.into()),
        })?;
        if spooled.len() + chunk.len() as u64 > MAX_OUTPUT_BYTES {
            return Err(CopyFailed::lasting(too_large(url)));
        }
        let wanted = HEAD_BYTES - head.len();
        head.extend_from_slice(&chunk[..wanted.min(chunk.len())]);
        spooled.write(&chunk).await.map_err(CopyFailed::lasting)?;
    }
    if let Some(what) = not_the_file(&served_as, &head, expects_image) {
        return Err(CopyFailed::lasting(Unusable(format!(
            "Output link on {} answered {what}, not the file",
            host_in(url)
        ))));
    }
    Ok(Copied {
        served_as,
        spooled,
        slot,
    })
}

/// How much of a copied file's start [`not_the_file`] reads.
const HEAD_BYTES: usize = 256;

/// What a link's answer is instead of the file, judged from its first bytes and the type it
/// was `served_as`: markup of a web page or a JSON document (a store's or CDN's error sent
/// with a success status, under whatever type), or, when an image is expected, bytes of no
/// image format under a type that is not an image's (one that is, as SVG, is believed).
fn not_the_file(served_as: &str, head: &[u8], expects_image: bool) -> Option<String> {
    let start = String::from_utf8_lossy(head);
    let text = start.trim_start_matches('\u{feff}').trim_start();
    let lowered = text.to_ascii_lowercase();
    let excerpt = || text.chars().take(120).collect::<String>();
    if lowered.starts_with("<!doctype html") || lowered.starts_with("<html") {
        return Some(format!("a web page ({})", excerpt()));
    }
    let served = served_as.split(';').next().unwrap_or_default().trim();
    if (text.starts_with('{') || text.starts_with('[')) && served.ends_with("json") {
        return Some(format!("a JSON document ({})", excerpt()));
    }
    let an_image = image::guess_format(head).is_ok() || served.starts_with("image/");
    (expects_image && !an_image).then(|| {
        format!(
            "{} bytes of no image format",
            if served.is_empty() { "untyped" } else { served }
        )
    })
}

/// Whether a failed request's trouble may pass: a dropped or timed-out connection, a 5xx, a
/// 408 or a 429 (the guard's own refusals are no `reqwest` errors, and never pass).
fn passing(error: &anyhow::Error) -> bool {
    let Some(error) = error.downcast_ref::<reqwest::Error>() else {
        return false;
    };
    match error.status() {
        Some(status) => status.is_server_error() || matches!(status.as_u16(), 408 | 429),
        None => error.is_connect() || error.is_timeout() || error.is_request() || error.is_body(),
    }
}

/// The image format `task`'s API promised and its model does not produce itself, a content
/// type the host writes (see the module's invariants).
fn image_format(task: &Task) -> Option<&'static str> {
    let extra: serde_json::Value = serde_json::from_str(&task.extra).ok()?;
    match extra.get("image_format")?.as_str()? {
        "image/png" => Some("image/png"),
        "image/jpeg" => Some("image/jpeg"),
        _ => None,
    }
}

/// What an output in `content_type` must be converted to: `image_format`, when it is an image
/// in another format.
fn conversion(content_type: &str, image_format: Option<&'static str>) -> Option<&'static str> {
    let wanted = image_format?;
    let image = content_type.starts_with("image/");
    (image && !content_type.eq_ignore_ascii_case(wanted)).then_some(wanted)
}

/// `data`, an image in `content_type`, as `wanted`; kept as it came (with a warning) when the
/// host cannot read it: the vendor made it, and the client can still use it.
async fn convert(
    task: &Task,
    content_type: String,
    data: Bytes,
    wanted: &'static str,
) -> (String, Bytes) {
    // Decoding and encoding a large image would stall the async thread it ran on.
    let image = data.clone();
    let converted = tokio::task::spawn_blocking(move || encode_as(&image, wanted))
        .await
        .map_err(anyhow::Error::from)
        .and_then(|encoded| encoded);
    match converted {
        Ok(image) => (wanted.to_string(), image.into()),
        Err(error) => {
            tracing::warn!(task = %task.id, %content_type, wanted, %error, "an output image could not be converted; stored as it came");
            (content_type, data)
        }
    }
}

/// An image re-encoded as `content_type` (PNG, or JPEG without its alpha channel).
fn encode_as(data: &[u8], content_type: &str) -> anyhow::Result<Vec<u8>> {
    use image::{DynamicImage, codecs::jpeg::JpegEncoder, codecs::png::PngEncoder};
    let image = image::load_from_memory(data)?;
    let mut out = Vec::new();
    if content_type == "image/jpeg" {
        // The quality the native model's own JPEGs are written at.
        DynamicImage::ImageRgb8(image.to_rgb8())
            .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 95))?;
    } else {
        image.write_with_encoder(PngEncoder::new(&mut out))?;
    }
    Ok(out)
}

fn output_name(task: &Task, index: usize, content_type: &str) -> String {
    format!("{}-{index}.{}", task.id, extension_of(content_type))
}

fn new_file<'a>(task: &'a Task, name: &'a str, content_type: &'a str) -> NewFile<'a> {
    NewFile {
        client_id: &task.client_id,
        name,
        content_type,
        task_id: Some(&task.id),
    }
}

/// The task's provider decides which hosts its links may use.
fn link_check(engine: &Engine, task: &Task) -> HostCheck {
    let provider = engine.registry().provider(&task.provider);
    let id = task.provider.clone();
    Arc::new(move |host: &str| match &provider {
        Some(provider) => provider.output_link_refused(host),
        None => Some(format!(
            "provider {id} is no longer loaded, so its link to {host} cannot be checked"
        )),
    })
}

fn host_in(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| crate::net::host_of(&u))
        .unwrap_or_else(|_| url.to_string())
}

fn refused(url: &str, error: anyhow::Error) -> anyhow::Error {
    // The link's query may carry whatever the plugin put there; name only its host.
    let error = match error.downcast::<reqwest::Error>() {
        Ok(e) => anyhow::Error::from(e.without_url()),
        Err(e) => e,
    };
    // The vendor made the file, and likely charged for it: the operator should know.
    Unusable(format!(
        "Output link on {} could not be copied (the vendor finished the task and may have \
         charged for it): {error:#}",
        host_in(url)
    ))
    .into()
}

fn too_large(url: &str) -> Unusable {
    Unusable(format!(
        "Output link on {} could not be copied: the file is larger than {MAX_OUTPUT_BYTES} bytes",
        host_in(url)
    ))
}

#[cfg(test)]
mod tests {
    use image::GenericImageView;

    use super::*;

    #[test]
    fn a_link_in_passing_trouble_is_tried_six_times_over_half_a_minute() {
        let waits: Vec<u64> = (1..)
            .map_while(copy_wait)
            .map(|wait| wait.as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16]);
    }

    #[test]
    fn images_are_re_encoded_and_unreadable_ones_refused() {
        let mut png = Vec::new();
        image::DynamicImage::new_rgba8(4, 3)
            .write_with_encoder(image::codecs::png::PngEncoder::new(&mut png))
            .unwrap();
        let jpeg = encode_as(&png, "image/jpeg").unwrap();
        assert!(jpeg.starts_with(&[0xFF, 0xD8, 0xFF]), "{:?}", &jpeg[..4]);
        let back = encode_as(&jpeg, "image/png").unwrap();
        assert!(back.starts_with(b"\x89PNG"));
        assert_eq!(image::load_from_memory(&back).unwrap().dimensions(), (4, 3));
        // A format the host does not read (WebP here) is refused, and then kept as it came.
        assert!(encode_as(b"RIFF\x1a\0\0\0WEBPVP8L", "image/jpeg").is_err());
    }

    #[test]
    fn error_pages_and_messages_are_not_taken_for_the_file() {
        let page = b"\n  <!DOCTYPE html><html><body>Please log in</body></html>";
        for served in [
            "application/json",
            "application/octet-stream",
            "",
            "image/png",
        ] {
            let why = not_the_file(served, page, false).unwrap();
            assert!(
                why.starts_with("a web page (<!DOCTYPE html>"),
                "{served}: {why}"
            );
        }
        let message = br#"{"error": {"code": "AccessDenied"}}"#;
        let why = not_the_file("application/json; charset=utf-8", message, false).unwrap();
        assert!(why.contains("AccessDenied"), "{why}");
        // Where an image is expected: bytes of no image format under no image type.
        let why = not_the_file("application/octet-stream", b"<?xml version", true).unwrap();
        assert_eq!(why, "application/octet-stream bytes of no image format");
        assert_eq!(not_the_file("", b"\x89PNG\r\n\x1a\n....", true), None);
        assert_eq!(
            not_the_file("binary/octet-stream", b"\xff\xd8\xff\xe0", true),
            None
        );
        // A type that says image is believed (SVG has no magic bytes), and nothing is
        // expected of a video's bytes but that they are no page or message.
        assert_eq!(not_the_file("image/svg+xml", b"<svg xmlns=", true), None);
        assert_eq!(
            not_the_file("video/mp4", b"\0\0\0\x18ftypmp42", false),
            None
        );
    }
}
