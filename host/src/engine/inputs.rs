//! Input files: the one place a request's files are checked, and the one place their bytes
//! are fetched for a provider.
//!
//! Invariants:
//! - At the front door ([`check`]) every input is checked before anything is stored: an
//!   http(s) URL passes the no-SSRF rule ([`crate::net::Guard::check_url`]); a `data:` URL is
//!   parsed by the `data-url` crate, must be base64 and must decode; an asset id (or the
//!   download path an upload answered with, given as a URL) must be one of the caller's; an
//!   upload must not be empty. An image or mask given whole (an upload, a `data:` URL) must
//!   start as an image does ([`looks_like_image`]), for every model: a vendor handed a text
//!   file named PNG answers with an error of its own, after the task was charged. For a
//!   model whose provider decodes its input images ([`ImageBounds`]), an image's dimensions
//!   are read from its header (never by decoding it) and an image larger than the model's
//!   largest width or height is refused, as is one whose header names no format the provider
//!   decodes (not an image, or a GIF named PNG) when the whole file is at hand; of a bucket
//!   asset only the first bytes are read, so such a header is left to the provider there. A
//!   kind the model's vendor takes only as links ([`InputRules`], its `url_inputs`) is refused
//!   as a `data:` URL, and as an upload or stored file unless easel has a public address.
//!   Uploads wait under temporary names and become assets only after the whole request was
//!   accepted ([`Checked::store_uploads`]); a refused request's uploads are removed.
//! - At run time ([`load`]) assets and `data:` URLs become bytes for every provider; remote
//!   URLs are fetched only for a provider that reads bytes
//!   ([`Provider::reads_input_bytes`](crate::engine::provider::Provider::reads_input_bytes))
//!   or of a kind the model's vendor takes only as files (its `file_inputs`), through the
//!   same no-SSRF client as vendor outputs, within `[limits] max_upload_bytes`; a
//!   stored input of a kind the vendor takes only as links becomes a signed public link
//!   under `EASEL_PUBLIC_URL` (the vendor fetches it from easel) instead of bytes; a
//!   fetched image or mask must start as an image does, as one given whole must at the door;
//!   with the model's [`ImageBounds`], every image is checked from its header again before
//!   the provider decodes it. A fetch or check that fails fails the task with the reason; nothing fails
//!   silently.

use crate::{
    assets::{Asset, Assets, NewFile, Spooled},
    engine::{
        Engine,
        provider::{GenerationRequest, InputMedia},
        task::failure_reason,
    },
};

/// One input file as a dialect parsed it.
#[derive(Debug)]
pub struct Input {
    /// The field it came in, as the calling API names it (`imageUrls`, `image_file`,
    /// `init_image`), for messages.
    pub field: String,
    /// `image`, `video`, `audio` or `mask`; `None` for an asset of the kind it was stored as.
    pub kind: Option<String>,
    /// The role the API gives it (`first_frame`, `reference`, `@图片1`), if any.
    pub role: Option<String>,
    /// Where its bytes are.
    pub source: Source,
}

/// The asset whose download path, relative to this host, `url` is.
fn asset_named_by(url: &str) -> Option<String> {
    let (id, rest) = url.strip_prefix("/api/v1/assets/")?.split_once('/')?;
    (rest == "download" && !id.is_empty()).then(|| id.to_string())
}

/// Where an input's bytes are.
#[derive(Debug)]
pub enum Source {
    /// An http(s) or `data:` URL.
    Url(String),
    /// One of the caller's assets, by id.
    Asset(String),
    /// A file sent with the request, stored once the request is accepted.
    Upload {
        /// File name shown to clients.
        name: String,
        /// MIME type.
        content_type: String,
        /// The file, received under a temporary name.
        file: Spooled,
    },
}

impl Input {
    /// An input by URL; the URL an upload answers with (`/api/v1/assets/{id}/download`)
    /// names that asset, as seed 001 lets clients use it.
    pub fn url(field: &str, kind: &str, role: Option<&str>, url: String) -> Self {
        let source = match asset_named_by(&url) {
            Some(id) => Source::Asset(id),
            None => Source::Url(url),
        };
        Self {
            field: field.into(),
            kind: Some(kind.into()),
            role: role.map(str::to_string),
            source,
        }
    }

    /// One of the caller's assets; `kind` overrides the kind it was stored as.
    pub fn asset(field: &str, kind: Option<&str>, role: Option<&str>, id: String) -> Self {
        Self {
            field: field.into(),
            kind: kind.map(str::to_string),
            role: role.map(str::to_string),
            source: Source::Asset(id),
        }
    }

    /// A file sent with the request.
    pub fn upload(
        field: &str,
        kind: &str,
        role: Option<&str>,
        name: String,
        content_type: String,
        file: Spooled,
    ) -> Self {
        Self {
            field: field.into(),
            kind: Some(kind.into()),
            role: role.map(str::to_string),
            source: Source::Upload {
                name,
                content_type,
                file,
            },
        }
    }
}

/// Why an input was refused: the field and a client-facing sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadInput {
    /// The field at fault, as the API names it.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Inputs that passed the checks; uploads are not stored yet.
#[derive(Debug)]
pub struct Checked {
    media: Vec<InputMedia>,
    /// The field each of `media` came in.
    fields: Vec<String>,
    /// `(index into media, the upload)` for files still to store.
    uploads: Vec<(usize, UploadFile)>,
    /// How each of `media` was given.
    forms: Vec<Form>,
}

/// How an input was given, for a model that takes some kinds only as links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// An http(s) URL, or an asset registered by one: a link already.
    Link,
    /// An upload or a stored file: easel can link it under `EASEL_PUBLIC_URL`.
    Stored,
    /// A `data:` URL.
    Inline,
}

#[derive(Debug)]
struct UploadFile {
    name: String,
    content_type: String,
    file: Spooled,
}

/// The input images a model takes, for a provider that decodes its input images
/// ([`Provider::reads_input_bytes`](crate::engine::provider::Provider::reads_input_bytes)):
/// at most the `maximum` of the width and height its parameter schema declares, and at least
/// one `multipleOf` step of each (such a provider rounds an image down to whole steps, so a
/// smaller one would be nothing).
#[derive(Debug, Clone, Copy)]
pub struct ImageBounds {
    /// Pixels.
    pub width: u64,
    /// Pixels.
    pub height: u64,
    /// The smallest side, in pixels.
    pub min_side: u64,
}

impl ImageBounds {
    /// The bounds `resolved` declares, when its provider decodes input images.
    pub fn of(resolved: &crate::engine::registry::Resolved) -> Option<Self> {
        if !resolved.provider.reads_input_bytes() {
            return None;
        }
        let properties = &resolved.model.params_schema["properties"];
        let step = |side: &str| properties[side]["multipleOf"].as_u64().unwrap_or(1);
        Some(Self {
            width: properties["width"]["maximum"].as_u64()?,
            height: properties["height"]["maximum"].as_u64()?,
            min_side: step("width").max(step("height")),
        })
    }

    /// Refuses an image whose header says it is larger or smaller, and one whose header cannot
    /// be read when the reader holds the `whole` file (else it is left to the provider).
    fn check(
        &self,
        image: image::ImageReader<impl std::io::BufRead + std::io::Seek>,
        whole: bool,
    ) -> Result<(), String> {
        let header = image
            .with_guessed_format()
            .map_err(image::ImageError::IoError)
            .and_then(|reader| reader.into_dimensions());
        let (width, height) = match header {
            Ok(size) => size,
            Err(error) if whole => {
                return Err(format!("is not an image this model can read: {error}"));
            }
            Err(_) => return Ok(()),
        };
        if u64::from(width) > self.width || u64::from(height) > self.height {
            return Err(format!(
                "is {width}x{height} pixels; this model takes images of at most {}x{}",
                self.width, self.height
            ));
        }
        if u64::from(width.min(height)) < self.min_side {
            let side = self.min_side;
            return Err(format!(
                "is {width}x{height} pixels; this model takes images of at least {side}x{side}"
            ));
        }
        Ok(())
    }

    /// [`ImageBounds::check`] on `bytes`, the `whole` file or only its first bytes.
    fn check_bytes(&self, bytes: &[u8], whole: bool) -> Result<(), String> {
        self.check(image::ImageReader::new(std::io::Cursor::new(bytes)), whole)
    }

    async fn check_file(&self, path: &std::path::Path) -> Result<(), String> {
        let (bounds, path) = (*self, path.to_path_buf());
        // Reading a header is a few small reads, but they block.
        tokio::task::spawn_blocking(move || match image::ImageReader::open(&path) {
            Ok(reader) => bounds.check(reader, true),
            Err(_) => Ok(()),
        })
        .await
        .unwrap_or(Ok(()))
    }

    async fn check_stored(&self, assets: &Assets, asset: &Asset) -> Result<(), String> {
        match assets.local_path(&asset.id) {
            Some(path) => self.check_file(&path).await,
            // Dimensions are in an image's header: one not within the first bytes, or not
            // readable, is left to the provider, as a file's is.
            None => match assets.read_head(asset, HEADER_BYTES).await {
                Ok(head) => self.check_bytes(&head, false),
                Err(_) => Ok(()),
            },
        }
    }
}

/// How much of a stored image is read to learn its dimensions.
const HEADER_BYTES: u64 = 64 * 1024;

/// Checks every input of a request (see the module invariants); `bounds` are the model's
/// largest input image, when it has one.
pub async fn check(
    engine: &Engine,
    client_id: &str,
    inputs: Vec<Input>,
    bounds: Option<ImageBounds>,
) -> Result<Checked, CheckError> {
    let mut checked = Checked {
        forms: Vec::new(),
        media: Vec::with_capacity(inputs.len()),
        fields: Vec::with_capacity(inputs.len()),
        uploads: Vec::new(),
    };
    for Input {
        field,
        kind,
        role,
        source,
    } in inputs
    {
        let bad = |message: String| {
            CheckError::Bad(BadInput {
                field: field.clone(),
                message,
            })
        };
        // An asset registered by URL reaches the provider as that link.
        let mut registered = false;
        let mut media = InputMedia {
            kind: kind.unwrap_or_default(),
            role,
            url: None,
            asset_id: None,
            content_type: None,
            data: None,
        };
        match source {
            Source::Url(url) if url.starts_with("data:") => {
                let (content_type, bytes) = decode_data_url(&url).map_err(|reason| {
                    bad(format!("{field} holds a malformed data URL: {reason}"))
                })?;
                if is_picture(&media.kind, &content_type)
                    && !looks_like_image(&bytes, &content_type)
                {
                    return Err(bad(not_an_image(&field)));
                }
                if let Some(bounds) = bounds.filter(|_| is_image(&media.kind, &content_type)) {
                    bounds
                        .check_bytes(&bytes, true)
                        .map_err(|reason| bad(format!("{field} {reason}")))?;
                }
                media.content_type = Some(content_type);
                media.url = Some(url);
            }
            Source::Url(url) => {
                engine
                    .guard()
                    .check_url(&url)
                    .map_err(|reason| bad(format!("{field}: {reason}")))?;
                media.url = Some(url);
            }
            Source::Asset(id) => {
                let asset = engine
                    .assets()
                    .get(client_id, &id)
                    .await
                    .map_err(CheckError::Internal)?
                    .ok_or_else(|| bad(format!("Unknown asset: {id}")))?;
                if media.kind.is_empty() {
                    // A file of a known type that is no media (text, a PDF) is no model's
                    // input; one of unknown type (`application/octet-stream`) may be.
                    if asset.kind == "file" && asset.content_type != "application/octet-stream" {
                        return Err(bad(format!(
                            "{field}: asset {id} is {}, not an image, video or audio file",
                            asset.content_type
                        )));
                    }
                    media.kind = asset.kind.clone();
                }
                if let Some(bounds) = bounds.filter(|_| is_image(&media.kind, &asset.content_type))
                    && asset.url.is_none()
                {
                    bounds
                        .check_stored(engine.assets(), &asset)
                        .await
                        .map_err(|reason| bad(format!("{field} {reason}")))?;
                }
                media.content_type = Some(asset.content_type);
                media.asset_id = Some(asset.id);
                registered = asset.url.is_some();
            }
            Source::Upload {
                name,
                content_type,
                file,
            } => {
                if file.is_empty() {
                    return Err(bad(format!("{field} is empty")));
                }
                if is_picture(&media.kind, &content_type) {
                    let head = first_bytes(file.path())
                        .await
                        .map_err(|error| CheckError::Internal(error.into()))?;
                    if !looks_like_image(&head, &content_type) {
                        return Err(bad(not_an_image(&field)));
                    }
                }
                if let Some(bounds) = bounds.filter(|_| is_image(&media.kind, &content_type)) {
                    bounds
                        .check_file(file.path())
                        .await
                        .map_err(|reason| bad(format!("{field} {reason}")))?;
                }
                media.content_type = Some(content_type.clone());
                checked.uploads.push((
                    checked.media.len(),
                    UploadFile {
                        name,
                        content_type,
                        file,
                    },
                ));
            }
        }
        checked.forms.push(match &media.url {
            Some(url) if url.starts_with("data:") => Form::Inline,
            Some(_) => Form::Link,
            None if registered => Form::Link,
            None => Form::Stored,
        });
        checked.media.push(media);
        checked.fields.push(field);
    }
    Ok(checked)
}

/// What a model's manifest extras say of its inputs, checked at the front door
/// ([`Checked::within`]).
#[derive(Debug, Default)]
pub struct InputRules {
    /// The most inputs of each kind it takes (`max_inputs`: `{"image": 9}`); a kind it does
    /// not name is not counted.
    most: Vec<(String, usize)>,
    /// The kinds its vendor takes only as links it fetches (`url_inputs`: `["video"]`).
    links_only: Vec<String>,
    /// The kinds its vendor takes only as files sent to it (`file_inputs`: `["image"]`):
    /// easel fetches a link of such a kind for it.
    files_only: Vec<String>,
}

impl InputRules {
    /// The rules `resolved`'s manifest states.
    pub fn of(resolved: &crate::engine::registry::Resolved) -> InputRules {
        let extra = &resolved.model.extra;
        let most = extra.get("max_inputs").and_then(|v| v.as_object());
        let most = most.into_iter().flatten();
        let kinds = |name: &str| -> Vec<String> {
            let listed = extra.get(name).and_then(|v| v.as_array());
            listed
                .into_iter()
                .flatten()
                .filter_map(|kind| Some(kind.as_str()?.to_string()))
                .collect()
        };
        InputRules {
            most: most
                .filter_map(|(kind, n)| Some((kind.clone(), usize::try_from(n.as_u64()?).ok()?)))
                .collect(),
            links_only: kinds("url_inputs"),
            files_only: kinds("file_inputs"),
        }
    }
}

impl Checked {
    /// Refuses the first input past the most of its kind that `model` takes, or of a kind it
    /// takes only as a link given whole (a `data:` URL; an upload or a stored file unless
    /// `linkable`, easel having a public address to link it under), naming its field (kinds
    /// as each input was given or stored).
    pub fn within(&self, rules: &InputRules, model: &str, linkable: bool) -> Result<(), BadInput> {
        for (kind, most) in &rules.most {
            let of_kind: Vec<usize> = (0..self.media.len())
                .filter(|at| self.media[*at].kind == *kind)
                .collect();
            let Some(&past) = of_kind.get(*most) else {
                continue;
            };
            let given = of_kind.len();
            let field = self.fields[past].clone();
            let message = if *most == 0 {
                format!("{field}: {model} takes no {kind} inputs")
            } else {
                format!("{field}: {model} takes at most {most} {kind} inputs; {given} were given")
            };
            return Err(BadInput { field, message });
        }
        // A stored file reaches such a vendor as a signed link when easel has a public address.
        let unlinkable = |form: Form| form == Form::Inline || (form == Form::Stored && !linkable);
        let whole = (0..self.media.len()).find(|at| {
            unlinkable(self.forms[*at]) && rules.links_only.contains(&self.media[*at].kind)
        });
        if let Some(at) = whole {
            let (field, kind) = (self.fields[at].clone(), &self.media[at].kind);
            let message = if linkable {
                format!(
                    "{field}: {model} takes {kind} inputs only as links its vendor fetches: give \
                     an http(s) URL or upload the file, not a data: URL"
                )
            } else {
                format!(
                    "{field}: {model} takes {kind} inputs only as http(s) URLs its vendor fetches, \
                     not as an uploaded file, a data: URL or a stored asset (with EASEL_PUBLIC_URL \
                     set, easel hands the vendor a link to an upload)"
                )
            };
            return Err(BadInput { field, message });
        }
        Ok(())
    }

    /// Refuses masks `capability` does not take, naming the field: `image.inpaint` changes
    /// an image where exactly one mask says, and every other capability takes none (an edit
    /// with a mask is an inpainting).
    pub fn masks_fit(&self, capability: &str) -> Result<(), BadInput> {
        let masks: Vec<usize> = (0..self.media.len())
            .filter(|at| self.media[*at].kind == "mask")
            .collect();
        let inpaint = capability == "image.inpaint";
        let (at, message) = match masks.as_slice() {
            [_] if inpaint && self.media.iter().any(|media| media.kind == "image") => {
                return Ok(());
            }
            [] if !inpaint => return Ok(()),
            [] => (
                0,
                "image.inpaint needs a mask beside the image it changes".to_string(),
            ),
            [only] if inpaint => (
                *only,
                "image.inpaint needs the image to change beside its mask".into(),
            ),
            [_, second, ..] if inpaint => (
                *second,
                format!("image.inpaint takes one mask; {} were given", masks.len()),
            ),
            [first, ..] => (
                *first,
                format!("a mask is taken only by image.inpaint, not by {capability}"),
            ),
        };
        let field = self.fields.get(at).map_or("mask", String::as_str);
        Err(BadInput {
            field: field.to_string(),
            message: format!("{field}: {message}"),
        })
    }
}

/// Whether an input is an image, by the kind its API gave it or else its type.
fn is_image(kind: &str, content_type: &str) -> bool {
    kind == "image" || (kind.is_empty() && content_type.starts_with("image/"))
}

/// Whether an input is a picture: an image, or an edit's mask.
fn is_picture(kind: &str, content_type: &str) -> bool {
    kind == "mask" || is_image(kind, content_type)
}

/// Whether `head`, the start of a file given as an image, is one: a format known by its
/// first bytes (PNG, JPEG, GIF, WebP, AVIF, TIFF, BMP…), HEIF (phones' photos), or SVG, which
/// has no such bytes, when its type says so.
fn looks_like_image(head: &[u8], content_type: &str) -> bool {
    let heif = head.get(4..12).is_some_and(|brand| {
        [b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc"].contains(&brand.try_into().unwrap())
    });
    image::guess_format(head).is_ok() || heif || content_type == "image/svg+xml"
}

fn not_an_image(field: &str) -> String {
    format!("{field} is not an image: its first bytes are those of no image format")
}

/// The first bytes of an upload waiting at `path`, enough for [`looks_like_image`].
async fn first_bytes(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::with_capacity(32);
    tokio::fs::File::open(path)
        .await?
        .take(32)
        .read_to_end(&mut head)
        .await?;
    Ok(head)
}

/// Why [`check`] did not pass a request's inputs.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The client's input is wrong.
    #[error(transparent)]
    Bad(#[from] BadInput),
    /// The asset store failed.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl Checked {
    /// Makes the uploads assets and returns the inputs as the task stores them, with the new
    /// assets (to remove again if the task is not accepted after all).
    pub async fn store_uploads(
        self,
        assets: &Assets,
        client_id: &str,
    ) -> anyhow::Result<(Vec<InputMedia>, Vec<Asset>)> {
        let Checked {
            mut media, uploads, ..
        } = self;
        let mut stored = Vec::with_capacity(uploads.len());
        for (index, upload) in uploads {
            let written = assets
                .adopt(
                    NewFile {
                        client_id,
                        name: &upload.name,
                        content_type: &upload.content_type,
                        task_id: None,
                    },
                    upload.file,
                )
                .await;
            match written {
                Ok(asset) => {
                    media[index].asset_id = Some(asset.id.clone());
                    stored.push(asset);
                }
                Err(error) => {
                    assets.remove_all(&stored).await;
                    return Err(error);
                }
            }
        }
        Ok((media, stored))
    }
}

/// The MIME type and bytes of a base64 `data:` URL, or why it is not one.
pub fn decode_data_url(url: &str) -> Result<(String, Vec<u8>), String> {
    let parsed = data_url::DataUrl::process(url).map_err(|e| e.to_string())?;
    // The crate decodes percent-encoded text too; an input file must be base64.
    let header = url
        .split_once(',')
        .map_or("", |(header, _)| header)
        .trim_end()
        .to_ascii_lowercase();
    if !header.ends_with(";base64") {
        return Err("it must be base64 (data:<type>;base64,…)".into());
    }
    let (bytes, _) = parsed
        .decode_to_vec()
        .map_err(|_| "its base64 payload is broken".to_string())?;
    if bytes.is_empty() {
        return Err("it is empty".into());
    }
    let mime = parsed.mime_type();
    Ok((format!("{}/{}", mime.type_, mime.subtype), bytes))
}

/// Fills in the bytes of a task's inputs just before its provider runs: assets and `data:`
/// URLs always, remote URLs when `fetch_remote` (the provider reads bytes) or of a kind
/// `rules` say the vendor takes only as files. With `bounds`, every image among them is
/// checked from its header again (a remote one was never seen at the door) before the
/// provider decodes it. The error is the task's failure reason.
pub async fn load(
    engine: &Engine,
    client_id: &str,
    request: &mut GenerationRequest,
    fetch_remote: bool,
    bounds: Option<ImageBounds>,
    rules: &InputRules,
) -> Result<(), String> {
    for input in &mut request.inputs {
        if let Some(asset_id) = &input.asset_id {
            let unreadable = |error: anyhow::Error| {
                tracing::warn!(asset = %asset_id, %error, "reading an input asset failed");
                format!("Input asset {asset_id} could not be read.")
            };
            let asset = engine
                .assets()
                .get(client_id, asset_id)
                .await
                .map_err(unreadable)?
                .ok_or_else(|| format!("Input asset {asset_id} no longer exists."))?;
            input.content_type.get_or_insert(asset.content_type.clone());
            let link = engine
                .public_link()
                .filter(|_| rules.links_only.contains(&input.kind));
            match (&asset.url, link) {
                (Some(url), _) => input.url = Some(url.clone()),
                // Its vendor takes it only as a link: fetched from easel, never sent as bytes.
                (None, Some(link)) => {
                    input.url = Some(link(asset_id));
                    continue;
                }
                (None, None) => {
                    input.data = Some(
                        engine
                            .assets()
                            .read(&asset)
                            .await
                            .map_err(unreadable)?
                            .into(),
                    );
                    continue;
                }
            }
        }
        let Some(url) = input.url.clone() else {
            continue;
        };
        if url.starts_with("data:") {
            let (content_type, bytes) = decode_data_url(&url)
                .map_err(|reason| format!("An input data URL is malformed: {reason}."))?;
            input.content_type.get_or_insert(content_type);
            input.data = Some(bytes.into());
        } else if fetch_remote || rules.files_only.contains(&input.kind) {
            let (content_type, bytes) = engine
                .guard()
                .fetch(&url, engine.limits().max_upload_bytes)
                .await
                .map_err(|error| failure_reason(&format!("Fetching input {url} failed"), &error))?;
            // Seen here first: the door had only its link.
            if is_picture(&input.kind, &content_type) && !looks_like_image(&bytes, &content_type) {
                return Err(format!(
                    "The input {url} is not an image: its first bytes are those of no image \
                     format."
                ));
            }
            input.content_type.get_or_insert(content_type);
            input.data = Some(bytes.into());
        }
    }
    let Some(bounds) = bounds else {
        return Ok(());
    };
    for input in &request.inputs {
        let content_type = input.content_type.as_deref().unwrap_or_default();
        if let Some(data) = &input.data
            && is_image(&input.kind, content_type)
        {
            bounds
                .check_bytes(data, true)
                .map_err(|reason| format!("An input image {reason}."))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{decode_data_url, looks_like_image};

    #[test]
    fn an_image_is_known_by_its_first_bytes() {
        assert!(looks_like_image(b"\x89PNG\r\n\x1a\n", "image/png"));
        assert!(looks_like_image(
            &[0xFF, 0xD8, 0xFF, 0xE0],
            "application/octet-stream"
        ));
        assert!(looks_like_image(b"RIFF\x1a\0\0\0WEBPVP8L", "image/webp"));
        assert!(looks_like_image(
            b"\0\0\0\x18ftypheic\0\0\0\0",
            "image/heic"
        ));
        assert!(looks_like_image(b"<svg xmlns=", "image/svg+xml"));
        assert!(!looks_like_image(b"hello", "image/png"));
        assert!(!looks_like_image(b"<svg xmlns=", "image/png"));
        assert!(!looks_like_image(b"", "image/png"));
    }

    #[test]
    fn data_urls_must_be_base64_and_decode() {
        let (kind, bytes) = decode_data_url("data:image/png;base64,iVBORw0KGgo=").unwrap();
        assert_eq!(kind, "image/png");
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(decode_data_url("data:image/png,plain%20text").is_err());
        assert!(decode_data_url("data:image/png;base64,@@not*base64@@").is_err());
        assert!(decode_data_url("data:image/png;base64,").is_err());
        assert!(decode_data_url("data:image/png;base64").is_err());
        // Parameters before the marker and the marker's case are the parser's business.
        let (kind, _) = decode_data_url("data:image/jpeg;name=a.jpg;BASE64,/9j/4A==").unwrap();
        assert_eq!(kind, "image/jpeg");
    }
}
