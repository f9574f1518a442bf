//! [`Capability`]: what the engine can be asked to do, the one list of them and their one
//! parser.
//!
//! Invariant: a capability's name on every wire (JSON bodies, the WIT contract, stored task
//! rows, plugin manifests) is its dotted string ([`Capability::as_str`]); anything that
//! accepts one from outside goes through [`Capability::parse`], so an unknown name is refused
//! the same way everywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An engine capability, as DESIGN.md names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// `chat`: a chat completion.
    Chat,
    /// `image.generate`: text to image.
    ImageGenerate,
    /// `image.edit`: an image changed as the prompt says.
    ImageEdit,
    /// `image.inpaint`: the masked part of an image redrawn.
    ImageInpaint,
    /// `image.upscale`: an image made larger.
    ImageUpscale,
    /// `video.generate`: text or images to video.
    VideoGenerate,
    /// `audio.speech`: text to speech.
    AudioSpeech,
}

impl Capability {
    /// Every capability, in the order the APIs list them.
    pub const ALL: [Capability; 7] = [
        Capability::Chat,
        Capability::ImageGenerate,
        Capability::ImageEdit,
        Capability::ImageInpaint,
        Capability::ImageUpscale,
        Capability::VideoGenerate,
        Capability::AudioSpeech,
    ];

    /// The dotted name every wire uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Chat => "chat",
            Capability::ImageGenerate => "image.generate",
            Capability::ImageEdit => "image.edit",
            Capability::ImageInpaint => "image.inpaint",
            Capability::ImageUpscale => "image.upscale",
            Capability::VideoGenerate => "video.generate",
            Capability::AudioSpeech => "audio.speech",
        }
    }

    /// The kind of file it makes, as assets name kinds (`image`, `video`, `audio`), or
    /// `text` for a chat.
    pub fn makes(self) -> &'static str {
        match self {
            Capability::Chat => "text",
            Capability::ImageGenerate
            | Capability::ImageEdit
            | Capability::ImageInpaint
            | Capability::ImageUpscale => "image",
            Capability::VideoGenerate => "video",
            Capability::AudioSpeech => "audio",
        }
    }

    /// Every capability's name, comma-separated, for a refusal to list.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    /// The capability with this dotted name (exact, case-sensitive), if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// A name that is not a capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {0:?} (the capabilities: {names})", names = Capability::names())]
pub struct UnknownCapability(pub String);

impl FromStr for Capability {
    type Err = UnknownCapability;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::parse(name).ok_or_else(|| UnknownCapability(name.to_string()))
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_capability() {
        for c in Capability::ALL {
            assert_eq!(Capability::parse(c.as_str()), Some(c));
            assert_eq!(c.as_str().parse::<Capability>(), Ok(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(Capability::parse("image"), None);
        assert_eq!(Capability::parse("Image.Generate"), None);
        assert_eq!(
            "video".parse::<Capability>(),
            Err(UnknownCapability("video".into()))
        );
    }

    #[test]
    fn serde_uses_the_dotted_names() {
        let json = serde_json::to_string(&Capability::ALL).unwrap();
        assert_eq!(
            json,
            r#"["chat","image.generate","image.edit","image.inpaint","image.upscale","video.generate","audio.speech"]"#
        );
        let back: Vec<Capability> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Capability::ALL);
        let owned: Capability =
            serde_json::from_value(serde_json::Value::String("image.edit".into())).unwrap();
        assert_eq!(owned, Capability::ImageEdit);
        let err = serde_json::from_str::<Capability>(r#""image.paint""#).unwrap_err();
        assert!(err.to_string().contains("unknown capability"), "{err}");
        assert!(
            err.to_string().contains("image.generate, image.edit"),
            "{err}"
        );
    }
}
