//! Input media as vendors take them.
//!
//! The host gives each input file as a record with a `kind` (`image`, `video`, `audio`,
//! `mask`), an optional `role` (`first_frame`, `last_frame`, `reference`, or none for a
//! plain source image), and a public `url` and/or the `data` itself. Vendors take either a
//! URL or, for some fields, a base64 `data:` URL; [`Reference`] says which a field accepts.

use base64::Engine as _;
use easel_sdk::{Error, InputMedia, Result};

/// What a vendor field accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// Only a URL the vendor can fetch.
    UrlOnly,
    /// A URL, or a `data:<mime>;base64,<bytes>` URL when the input has no URL.
    UrlOrDataUrl,
}

/// The string to put in a vendor field for `input`: its URL when it has one, else a data
/// URL where the field accepts one. An input with neither is an invalid request naming
/// `field`.
pub fn reference(input: &InputMedia, accepts: Reference, field: &str) -> Result<String> {
    if let Some(url) = input.url.as_deref().filter(|u| !u.is_empty()) {
        return Ok(url.to_string());
    }
    match (&input.data, accepts) {
        (Some(data), Reference::UrlOrDataUrl) if !data.is_empty() => Ok(data_url(input, data)),
        (Some(_), Reference::UrlOnly) => Err(Error::invalid(format!(
            "`{field}` needs a public URL for the {} input; upload it somewhere the vendor can fetch, or register it by URL",
            input.kind
        ))),
        _ => Err(Error::invalid(format!(
            "the {} input for `{field}` has neither a URL nor data",
            input.kind
        ))),
    }
}

/// `data:<mime>;base64,<bytes>` for `data`, the MIME type from the record or sniffed.
pub fn data_url(input: &InputMedia, data: &[u8]) -> String {
    let mime = input
        .content_type
        .clone()
        .unwrap_or_else(|| sniff_content_type(&input.kind, data).to_string());
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(data)
    )
}

/// Plain base64 of the bytes (for vendors that want the bare encoding).
pub fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decodes standard base64 (vendors that return audio inline); bad input is the
/// vendor's fault, hence upstream-unavailable.
pub fn decode_base64(text: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| Error::upstream(format!("the vendor sent base64 that does not decode: {e}")))
}

/// The MIME type the bytes announce, falling back on the kind.
pub fn sniff_content_type(kind: &str, data: &[u8]) -> &'static str {
    match data {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [0xff, 0xd8, 0xff, ..] => "image/jpeg",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => "image/webp",
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'A',
            b'V',
            b'E',
            ..,
        ] => "audio/wav",
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => "video/mp4",
        [b'I', b'D', b'3', ..] | [0xff, 0xfb, ..] | [0xff, 0xf3, ..] => "audio/mpeg",
        _ => match kind {
            "image" | "mask" => "image/png",
            "video" => "video/mp4",
            "audio" => "audio/mpeg",
            _ => "application/octet-stream",
        },
    }
}

/// Inputs of this kind with exactly this role (`None`: inputs without a role).
pub fn with_role<'a>(
    inputs: &'a [InputMedia],
    kind: &'a str,
    role: Option<&'a str>,
) -> impl Iterator<Item = &'a InputMedia> {
    inputs
        .iter()
        .filter(move |i| i.kind == kind && i.role.as_deref() == role)
}

/// Inputs of this kind, whatever their role.
pub fn of_kind<'a>(
    inputs: &'a [InputMedia],
    kind: &'a str,
) -> impl Iterator<Item = &'a InputMedia> {
    inputs.iter().filter(move |i| i.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(kind: &str, url: Option<&str>, data: Option<&[u8]>) -> InputMedia {
        InputMedia {
            kind: kind.into(),
            url: url.map(str::to_string),
            data: data.map(<[u8]>::to_vec),
            ..Default::default()
        }
    }

    #[test]
    fn urls_win_and_data_becomes_a_data_url_only_where_accepted() {
        let both = input("image", Some("https://x/a.png"), Some(b"\x89PNG...."));
        assert_eq!(
            reference(&both, Reference::UrlOnly, "img").unwrap(),
            "https://x/a.png"
        );
        let bytes = input("image", None, Some(b"\x89PNG\r\n"));
        assert_eq!(
            reference(&bytes, Reference::UrlOrDataUrl, "img").unwrap(),
            "data:image/png;base64,iVBORw0K"
        );
        let e = reference(&bytes, Reference::UrlOnly, "reference_urls").unwrap_err();
        assert!(
            matches!(e, Error::InvalidRequest(m) if m.contains("public URL") && m.contains("reference_urls"))
        );
        assert!(reference(&input("image", None, None), Reference::UrlOrDataUrl, "img").is_err());
    }

    #[test]
    fn content_types_come_from_the_record_then_the_bytes_then_the_kind() {
        let mut jpeg = input("image", None, Some(&[0xff, 0xd8, 0xff, 0xe0]));
        assert!(data_url(&jpeg, &[0xff, 0xd8, 0xff, 0xe0]).starts_with("data:image/jpeg;base64,"));
        jpeg.content_type = Some("image/webp".into());
        assert!(data_url(&jpeg, &[0xff, 0xd8, 0xff]).starts_with("data:image/webp;base64,"));
        assert_eq!(
            sniff_content_type("video", b"\0\0\0\x18ftypmp42"),
            "video/mp4"
        );
        assert_eq!(sniff_content_type("audio", b"??"), "audio/mpeg");
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert!(matches!(
            decode_base64("*"),
            Err(Error::UpstreamUnavailable(_))
        ));
    }

    #[test]
    fn roles_filter_inputs() {
        let mut first = input("image", Some("u1"), None);
        first.role = Some("first_frame".into());
        let plain = input("image", Some("u2"), None);
        let video = input("video", Some("u3"), None);
        let all = vec![first, plain, video];
        assert_eq!(with_role(&all, "image", Some("first_frame")).count(), 1);
        assert_eq!(
            with_role(&all, "image", None)
                .next()
                .unwrap()
                .url
                .as_deref(),
            Some("u2")
        );
        assert_eq!(of_kind(&all, "video").count(), 1);
    }
}
