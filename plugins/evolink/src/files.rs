//! Inputs as EvoLink takes them. Its generation endpoints fetch every input from a URL
//! (`image_urls`, `mask_url`, `video_urls`, `audio_urls`); an input easel holds only as
//! bytes is first sent to EvoLink's file service as a base64 data URL
//! (`POST /api/v1/files/upload/base64` on `files-api.evolink.ai`, body `{"base64_data"}`),
//! whose answer `data.file_url` is then used. The file service takes images only (JPEG,
//! PNG, GIF, WebP), so video and audio inputs need public URLs.

use crate::{API_KEY_SECRET, FILES_BASE, errors};
use easel_sdk::http::Request;
use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Error, InputMedia, Result};
use std::time::Duration;

/// The image types EvoLink's base64 upload accepts.
const UPLOADABLE: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

fn public_url(input: &InputMedia) -> Option<&str> {
    input.url.as_deref().filter(|u| !u.is_empty())
}

fn bytes(input: &InputMedia) -> Option<&[u8]> {
    input.data.as_deref().filter(|d| !d.is_empty())
}

fn content_type(input: &InputMedia, data: &[u8]) -> String {
    input.content_type.clone().unwrap_or_else(|| vendor_kit::media::sniff_content_type(&input.kind, data).to_string())
}

/// Checks, before anything is sent, that `input` can be given to EvoLink in `field`: it has
/// a public URL, or it is an image whose bytes the file service takes.
pub fn check_fetchable(input: &InputMedia, field: &str) -> Result<()> {
    if public_url(input).is_some() {
        return Ok(());
    }
    let Some(data) = bytes(input) else {
        return Err(Error::invalid(format!("the {} input for `{field}` has neither a URL nor data", input.kind)));
    };
    let mime = content_type(input, data);
    if !matches!(input.kind.as_str(), "image" | "mask") || !UPLOADABLE.contains(&mime.as_str()) {
        return Err(Error::invalid(format!(
            "`{field}` needs a public URL for the {} input ({mime}): EvoLink's file upload takes only JPEG, PNG, GIF and WebP images",
            input.kind
        )));
    }
    Ok(())
}

/// The URL EvoLink should fetch `input` from: its own, or the file service's for its bytes.
pub fn url_for(input: &InputMedia) -> Result<String> {
    if let Some(url) = public_url(input) {
        return Ok(url.to_string());
    }
    let data = bytes(input).ok_or_else(|| Error::invalid(format!("the {} input has neither a URL nor data", input.kind)))?;
    let data_url = format!("data:{};base64,{}", content_type(input, data), vendor_kit::media::base64(data));
    upload(&data_url)
}

/// Uploads a `data:` URL and answers the hosted file's URL (EvoLink keeps it 72 hours).
fn upload(data_url: &str) -> Result<String> {
    let key = easel_sdk::require_secret(API_KEY_SECRET)?;
    let response = Request::post(format!("{FILES_BASE}/files/upload/base64"))
        .bearer(&key)
        .timeout(Duration::from_secs(120))
        .json(&json!({"base64_data": data_url}))
        .send()?;
    if !response.is_success() {
        return Err(errors::from_response(response.status(), response.header("retry-after"), response.body()));
    }
    let answer: Value = response.json()?;
    if answer["success"] == json!(false) {
        let status = answer["code"].as_u64().and_then(|c| u16::try_from(c).ok()).filter(|c| *c >= 400).unwrap_or(502);
        return Err(errors::from_response(status, None, response.body()));
    }
    answer["data"]["file_url"]
        .as_str()
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Error::upstream(format!("EvoLink's file upload answered without a file_url: {answer}")))
}
