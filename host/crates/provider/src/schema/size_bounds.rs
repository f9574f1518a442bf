//! `sizeBounds`, easel's one schema keyword of its own: the sizes a free `W*H` (or `WxH`)
//! string may ask for, where JSON Schema's keywords cannot say it (Wan renders 512 to 1440
//! pixels a side; another model any shape up to so many pixels in all).
//!
//! Invariants: a manifest states the bounds once, on the size property
//! (`{"type": "string", "sizeBounds": {"minSide": 512, "maxSide": 1440}}`); the front door
//! refuses a size outside them before a task exists, naming them; and the sizes easel picks
//! for a request (Pixel's `resolution`, seed 001's width and height) are fitted into them
//! ([`SizeBounds::fit`]) or refused, so no size the host chose fails at the vendor. Digits that
//! make no size (`0*1024`, a side past any count) are outside every bound; any other value
//! that does not read as a size passes: the property's `pattern` judges its form. Bounds that
//! hold no size keep the schema from compiling.

use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

/// The keyword's name in a schema.
pub const KEYWORD: &str = "sizeBounds";

/// The sizes a model renders, each bound optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SizeBounds {
    /// The fewest pixels either side may have.
    pub min_side: Option<u64>,
    /// The most pixels either side may have.
    pub max_side: Option<u64>,
    /// The fewest pixels in all.
    pub min_pixels: Option<u64>,
    /// The most pixels in all.
    pub max_pixels: Option<u64>,
    /// The most the long side may be over the short one (4: from 1:4 to 4:1).
    pub max_ratio: Option<f64>,
}

impl SizeBounds {
    /// The bounds a property's schema `rule` states, if it states any.
    pub fn of(rule: &Value) -> Option<SizeBounds> {
        serde_json::from_value(rule.get(KEYWORD)?.clone()).ok()
    }

    /// Whether `width` × `height` lies within the bounds.
    pub fn contains(&self, (width, height): (u64, u64)) -> bool {
        let pixels = width.saturating_mul(height);
        let (short, long) = (width.min(height), width.max(height));
        let at_least = |bound: Option<u64>, value: u64| bound.is_none_or(|bound| value >= bound);
        let at_most = |bound: Option<u64>, value: u64| bound.is_none_or(|bound| value <= bound);
        at_least(self.min_side, short)
            && at_most(self.max_side, long)
            && at_least(self.min_pixels, pixels)
            && at_most(self.max_pixels, pixels)
            && self
                .max_ratio
                .is_none_or(|ratio| long as f64 <= ratio * short as f64)
    }

    /// `target` scaled at its own ratio into the bounds (shrunk to the largest size they allow,
    /// or grown to the smallest); the ratio itself is not bent, so a ratio the bounds refuse
    /// stays outside them.
    pub fn fit(&self, (width, height): (f64, f64)) -> (f64, f64) {
        let (short, long) = (width.min(height), width.max(height));
        let pixels = width * height;
        let room = [
            self.max_side.map(|max| max as f64 / long),
            self.max_pixels.map(|max| (max as f64 / pixels).sqrt()),
        ];
        let needed = [
            self.min_side.map(|min| min as f64 / short),
            self.min_pixels.map(|min| (min as f64 / pixels).sqrt()),
        ];
        let room = room.into_iter().flatten().fold(f64::INFINITY, f64::min);
        let needed = needed.into_iter().flatten().fold(0.0, f64::max);
        let scale = if room < 1.0 {
            room
        } else {
            needed.clamp(1.0, room)
        };
        (width * scale, height * scale)
    }

    /// Why these bounds hold no size at all, if they hold none: a maximum under its minimum,
    /// a maximum of 0, a ratio under 1, sides that cannot make the pixels asked.
    fn empty(&self) -> Option<String> {
        let pairs = [
            ("minSide", self.min_side, "maxSide", self.max_side),
            ("minPixels", self.min_pixels, "maxPixels", self.max_pixels),
        ];
        for (low_name, low, high_name, high) in pairs {
            if let (Some(low), Some(high)) = (low, high)
                && high < low
            {
                return Some(format!("{high_name} {high} is under {low_name} {low}"));
            }
            if high == Some(0) {
                return Some(format!("{high_name} is 0"));
            }
        }
        if let Some(ratio) = self.max_ratio.filter(|ratio| !(*ratio >= 1.0)) {
            return Some(format!(
                "maxRatio {ratio} is under 1 (the long side over the short one)"
            ));
        }
        // Squares pass every ratio, so the sides allow from minSide² to maxSide² pixels.
        let square = |side: u64| side.saturating_mul(side);
        if let (Some(side), Some(pixels)) = (self.max_side, self.min_pixels)
            && square(side) < pixels
        {
            return Some(format!(
                "minPixels {pixels} is more than maxSide {side} allows"
            ));
        }
        match (self.min_side, self.max_pixels) {
            (Some(side), Some(pixels)) if square(side) > pixels => Some(format!(
                "maxPixels {pixels} is less than minSide {side} needs"
            )),
            _ => None,
        }
    }
}

impl fmt::Display for SizeBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = |min: Option<u64>, max: Option<u64>, unit: &str| match (min, max) {
            (Some(min), Some(max)) => Some(format!("{min} to {max} pixels {unit}")),
            (Some(min), None) => Some(format!("at least {min} pixels {unit}")),
            (None, Some(max)) => Some(format!("at most {max} pixels {unit}")),
            (None, None) => None,
        };
        let said: Vec<String> = [
            range(self.min_side, self.max_side, "a side"),
            range(self.min_pixels, self.max_pixels, "in all"),
            self.max_ratio
                .map(|ratio| format!("a long side at most {ratio} times the short one")),
        ]
        .into_iter()
        .flatten()
        .collect();
        f.write_str(&said.join(", "))
    }
}

/// `1280*720`, `1280x720` or `1280X720` as width and height.
pub fn parse_size(text: &str) -> Option<(u64, u64)> {
    let (width, height) = text.split_once(['*', 'x', 'X'])?;
    let (width, height): (u64, u64) = (width.trim().parse().ok()?, height.trim().parse().ok()?);
    (width > 0 && height > 0).then_some((width, height))
}

/// Whether `text` is two runs of digits around a size's separator, whatever their values.
fn written_as_size(text: &str) -> bool {
    let digits = |side: &str| !side.is_empty() && side.bytes().all(|b| b.is_ascii_digit());
    text.split_once(['*', 'x', 'X'])
        .is_some_and(|(width, height)| digits(width.trim()) && digits(height.trim()))
}

/// The keyword's check, for the validator ([`super::ParamsSchema::compile`]).
struct Check {
    bounds: SizeBounds,
    at: jsonschema::paths::Location,
}

impl jsonschema::Keyword for Check {
    fn validate<'i>(
        &self,
        instance: &'i Value,
        location: &jsonschema::paths::LazyLocation,
    ) -> Result<(), jsonschema::ValidationError<'i>> {
        if self.is_valid(instance) {
            return Ok(());
        }
        let size = instance.as_str().unwrap_or_default();
        Err(jsonschema::ValidationError::custom(
            self.at.clone(),
            location.into(),
            instance,
            format!(
                "{size} is outside the sizes this model renders ({})",
                self.bounds
            ),
        ))
    }

    fn is_valid(&self, instance: &Value) -> bool {
        let Some(text) = instance.as_str() else {
            return true;
        };
        match parse_size(text) {
            Some(size) => self.bounds.contains(size),
            // Digits that make no size (a side of 0, or past any count) are outside every
            // bound; anything else is the `pattern`'s to judge.
            None => !written_as_size(text),
        }
    }
}

/// Builds the keyword's check from its value in a schema, refusing a value that is not
/// bounds.
pub(super) fn compile<'a>(
    parent: &'a Map<String, Value>,
    value: &'a Value,
    location: jsonschema::paths::Location,
) -> Result<Box<dyn jsonschema::Keyword>, jsonschema::ValidationError<'a>> {
    let refuse = |why: String| {
        jsonschema::ValidationError::custom(location.clone(), location.clone(), value, why)
    };
    if !value.is_object() {
        return Err(refuse(format!("{KEYWORD} must be an object")));
    }
    let bounds = serde_json::from_value::<SizeBounds>(value.clone()).map_err(|error| {
        refuse(format!(
            "{KEYWORD} takes minSide, maxSide, minPixels, maxPixels and maxRatio: {error}"
        ))
    })?;
    if bounds == SizeBounds::default() {
        return Err(refuse(format!("{KEYWORD} states no bound")));
    }
    if let Some(why) = bounds.empty() {
        return Err(refuse(format!("{KEYWORD} holds no size: {why}")));
    }
    let check = Check {
        bounds,
        at: location.clone(),
    };
    // A default outside the bounds would refuse every request that leaves the size out.
    if let Some(default) = parent.get("default")
        && !jsonschema::Keyword::is_valid(&check, default)
    {
        return Err(refuse(format!(
            "the default size {default} is outside {KEYWORD} ({bounds})"
        )));
    }
    Ok(Box::new(check))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bounds(value: Value) -> SizeBounds {
        SizeBounds::of(&json!({ KEYWORD: value })).unwrap()
    }

    #[test]
    fn sides_pixels_and_ratio_bound_a_size() {
        let sides = bounds(json!({"minSide": 512, "maxSide": 1440}));
        assert!(sides.contains((512, 1440)));
        assert!(!sides.contains((1440, 2560)));
        assert!(!sides.contains((500, 800)));
        let area = bounds(json!({"minPixels": 589_824, "maxPixels": 2_073_600, "maxRatio": 4}));
        assert!(area.contains((1280, 1280)));
        assert!(area.contains((768, 768)));
        assert!(!area.contains((1440, 1441)));
        assert!(!area.contains((2048, 500)), "4.1:1");
        assert_eq!(
            area.to_string(),
            "589824 to 2073600 pixels in all, a long side at most 4 times the short one"
        );
        assert_eq!(sides.to_string(), "512 to 1440 pixels a side");
    }

    #[test]
    fn fitting_keeps_the_ratio_and_reaches_the_nearest_bound() {
        let sides = bounds(json!({"minSide": 512, "maxSide": 1440}));
        assert_eq!(sides.fit((2048.0, 2048.0)), (1440.0, 1440.0));
        assert_eq!(sides.fit((1440.0, 2560.0)), (810.0, 1440.0));
        assert_eq!(sides.fit((256.0, 512.0)), (512.0, 1024.0));
        assert_eq!(sides.fit((1024.0, 1024.0)), (1024.0, 1024.0));
        let area = bounds(json!({"maxPixels": 1_000_000}));
        let (w, h) = area.fit((2000.0, 1000.0));
        assert!((w * h - 1_000_000.0).abs() < 1.0 && (w / h - 2.0).abs() < 1e-9);
    }

    #[test]
    fn digits_that_make_no_size_are_outside_every_bound() {
        use jsonschema::Keyword as _;
        let check = Check {
            bounds: bounds(json!({"maxSide": 1440})),
            at: jsonschema::paths::Location::new(),
        };
        assert!(!check.is_valid(&json!("0*1024")));
        assert!(!check.is_valid(&json!("99999999999999999999*1024")));
        assert!(check.is_valid(&json!("1024*1024")));
        assert!(
            check.is_valid(&json!("auto")),
            "not a size: the pattern's to judge"
        );
    }

    #[test]
    fn bounds_that_hold_no_size_are_refused_at_load() {
        let compile = |rule: Value| {
            let schema = json!({"type": "object", "properties": {"size": rule}});
            crate::schema::ParamsSchema::compile(&schema).err()
        };
        for (rule, why) in [
            (
                json!({"sizeBounds": {"minSide": 2000, "maxSide": 100}}),
                "maxSide 100 is under",
            ),
            (
                json!({"sizeBounds": {"maxRatio": 0.5}}),
                "maxRatio 0.5 is under 1",
            ),
            (json!({"sizeBounds": {"maxSide": 0}}), "maxSide is 0"),
            (json!({"sizeBounds": {}}), "states no bound"),
            (
                json!({"sizeBounds": {"maxSide": 100, "minPixels": 20000}}),
                "more than maxSide 100 allows",
            ),
            (
                json!({"sizeBounds": {"minSide": 1000, "maxPixels": 500000}}),
                "less than minSide 1000 needs",
            ),
            (json!({"sizeBounds": [1, 2, 3, 4, 5]}), "must be an object"),
            (
                json!({"default": "512x512", "sizeBounds": {"minSide": 1024}}),
                "the default size \"512x512\" is outside",
            ),
        ] {
            let refused = compile(rule.clone()).unwrap_or_else(|| panic!("{rule} loaded"));
            assert!(refused.contains(why), "{rule}: {refused}");
        }
        let fine = json!({"default": "1024x1024", "sizeBounds": {"minSide": 1024}});
        assert_eq!(compile(fine), None);
    }

    #[test]
    fn sizes_read_with_either_separator() {
        assert_eq!(parse_size("1280*720"), Some((1280, 720)));
        assert_eq!(parse_size("1280x720"), Some((1280, 720)));
        assert_eq!(parse_size("0x720"), None);
        assert_eq!(parse_size("2K"), None);
    }
}
