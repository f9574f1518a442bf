//! The result files fakes link to (`/files/{name}`): tiny but well-formed PNG, MP4, MP3 and
//! WAV bodies, so the host's copy into its asset store can be compared byte for byte.

use axum::{
    extract::Path,
    http::header,
    response::{IntoResponse, Response},
};

/// The bytes of the result file `name`, by its extension.
pub fn file_bytes(name: &str) -> &'static [u8] {
    bytes_of_type(content_type_of(name))
}

/// The bytes of the result files served as `content_type`.
pub fn bytes_of_type(content_type: &str) -> &'static [u8] {
    match content_type {
        "image/png" => PNG_1X1,
        "video/mp4" => MP4_HEADER,
        "audio/wav" => WAV_HEADER,
        _ => MP3_HEADER,
    }
}

fn content_type_of(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("png") => "image/png",
        Some("mp4") => "video/mp4",
        Some("wav") => "audio/wav",
        _ => "audio/mpeg",
    }
}

/// Serves `/files/{name}`.
pub async fn result_file(Path(name): Path<String>) -> Response {
    (
        [(header::CONTENT_TYPE, content_type_of(&name))],
        file_bytes(&name),
    )
        .into_response()
}

/// A valid 1×1 PNG.
pub const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];
/// The start of an MP4 file (an `ftyp` box), enough for content sniffing.
pub const MP4_HEADER: &[u8] = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom";
/// The start of an MP3 file (an ID3 tag).
pub const MP3_HEADER: &[u8] = b"ID3\x04\0\0\0\0\0\0fake-mp3";
/// The start of a WAV file.
pub const WAV_HEADER: &[u8] = b"RIFF\x24\0\0\0WAVEfmt fake-wav";
