//! Pixel's size vocabulary (seed 000's `resolution` level and `aspectRatio`), and seed 001's
//! (`width` and `height`, `settings.ratio` and `settings.resolution`, [`job_size_params`]), in
//! each model's own terms, so a 16:9 request never comes back square.
//!
//! A model that declares `aspectRatio` reads Pixel's fields itself and gets nothing more. For
//! the others the asked size is the model's own `resolutions` table entry when its manifest
//! has one (`{"1K": {"16:9": "1280*720"}}`), else a pixel budget: `1K`, `2K` and `4K` hold as
//! many pixels as seed 000's square sizes of that level (1024², 2048², 4096²), and a height
//! level such as `720p` sets the short side. That size reaches the model as what its schema
//! takes, in this order: `width` and `height` (each rounded to the schema's `multipleOf`, 8
//! when it names none, and kept within its bounds at the same ratio; a ratio its bounds
//! cannot hold is refused); a `size` string (the nearest entry of that ratio when the schema
//! lists them, else `W*H` or `WxH` as the schema's default or pattern writes it, fitted into
//! its `sizeBounds` at the same ratio); a `ratio` of the seeds' other APIs. Seed 001's width
//! and height outside a free size's `sizeBounds` are refused, not resized. A `resolution` the
//! model lists is passed in the model's own spelling (`720p` to `720P`). A size or ratio the
//! request sets itself (`extraParams: {"width": …}`) is never replaced.

use serde_json::{Map, Value, json};

use easel_provider::schema::size_bounds::{self, SizeBounds};

use crate::engine::provider::ModelInfo;

/// Seed 000's default level: an image request without one asks for it.
pub const DEFAULT_LEVEL: &str = "1K";
/// Side rounding when a model's schema names no `multipleOf`.
const DEFAULT_MULTIPLE: u64 = 8;
/// How far a listed size's ratio may be from the asked one and still count as that ratio:
/// vendors round their sizes (DashScope's 16:9 at 480p is 832*480, 2.5 % off).
const RATIO_TOLERANCE: f64 = 0.03;
/// How far rounding to a model's steps and bounds may move a width and height's ratio from
/// the asked one before the ratio counts as one the model cannot render.
const RATIO_BENT: f64 = 0.1;

/// The parameters that give `model` the size a Pixel request's `params` ask for (its
/// `resolution` and `aspectRatio`), to add to them; the error is a client-facing message.
pub fn size_params(
    model: &ModelInfo,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let properties = model.params_schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let text = |name: &str| params.get(name).and_then(Value::as_str);
    let (resolution, aspect_ratio) = (text("resolution"), text("aspectRatio"));
    let mut out = Map::new();
    if properties.contains_key("aspectRatio") || (resolution.is_none() && aspect_ratio.is_none()) {
        return Ok(out);
    }
    if let (Some(level), Some(rule)) = (resolution, properties.get("resolution"))
        && let Some(spelled) = own_spelling(rule, level)
    {
        out.insert("resolution".into(), spelled.into());
    }
    if let Some(ratio) = aspect_ratio
        && properties.contains_key("ratio")
        && !params.contains_key("ratio")
    {
        out.insert("ratio".into(), ratio.into());
    }
    let wants_size = properties.contains_key("width") && properties.contains_key("height")
        || properties.contains_key("size");
    let sized_already = ["width", "height", "size"]
        .iter()
        .any(|name| params.contains_key(*name));
    if !wants_size || sized_already {
        return Ok(out);
    }
    let level_text = resolution.unwrap_or(DEFAULT_LEVEL);
    let Some(level) = Level::parse(level_text) else {
        if properties.contains_key("resolution") {
            // The model knows its own levels; its schema judges this one.
            return Ok(out);
        }
        return Err(format!(
            "Invalid parameter resolution: must be 1K, 2K, 4K or a height such as 720p, not '{level_text}'"
        ));
    };
    let ratio_text = aspect_ratio.unwrap_or(level.default_ratio());
    let Some(ratio) = parse_ratio(ratio_text) else {
        return Err(format!(
            "Invalid parameter aspectRatio: must look like 16:9, not '{ratio_text}'"
        ));
    };
    let target = table_size(model, level_text, ratio_text).unwrap_or_else(|| level.size(ratio));
    if let (Some(width), Some(height)) = (properties.get("width"), properties.get("height")) {
        let (w, h) = fit(target, width, height);
        // Bounds that cannot hold the ratio (1000:1) would bend it: refused, not bent.
        if ((w as f64 / h as f64) / ratio - 1.0).abs() > RATIO_BENT {
            return Err(format!(
                "Invalid parameter aspectRatio: this model cannot render {ratio_text} (the nearest \
                 its sizes allow is {w}x{h})"
            ));
        }
        out.insert("width".into(), w.into());
        out.insert("height".into(), h.into());
    } else if let Some(size) = properties.get("size") {
        out.insert("size".into(), size_value(size, target, ratio_text, ratio)?);
    }
    Ok(out)
}

/// Seed 001's size fields in `model`'s own terms, to add to `params`, where the jobs API put
/// them under their own names (`width` and `height`; `ratio` and `resolution` from
/// `settings`). A model whose schema takes `width` and `height` reads them as they are; for
/// the others an asked width and height become the model's `size` (that size exactly where
/// the size is free, also beside an `aspectRatio`, or refused outside its `sizeBounds`; the
/// nearest listed one of that ratio otherwise) or its `aspectRatio`,
/// and `ratio` with `resolution` size the model as Pixel's `aspectRatio` and `resolution` do
/// ([`size_params`]); a model that reads `aspectRatio` gets the ratio under that name, as it
/// lists it. A ratio the model cannot render is refused, naming the field that asked it.
pub fn job_size_params(
    model: &ModelInfo,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let properties = &model.params_schema["properties"];
    let pixels = |name: &str| params.get(name).and_then(Value::as_u64).filter(|n| *n > 0);
    let takes_sides = properties.get("width").is_some() && properties.get("height").is_some();
    let asked_sides = match (pixels("width"), pixels("height")) {
        (Some(w), Some(h)) if !takes_sides => Some((w, h)),
        // One side alone makes no size; it would be dropped without a word.
        (Some(_), None) | (None, Some(_)) if !takes_sides => {
            return Err(
                "Invalid parameter width and height: give both, or neither (settings.ratio \
                 and settings.resolution size it then)"
                    .into(),
            );
        }
        _ => None,
    };
    let (ratio_text, asked_by) = match (params.get("ratio").and_then(Value::as_str), asked_sides) {
        (Some(ratio), _) => (Some(ratio.to_string()), "settings.ratio"),
        (None, Some((w, h))) => {
            let divisor = gcd(w, h);
            (
                Some(format!("{}:{}", w / divisor, h / divisor)),
                "width and height",
            )
        }
        (None, None) => (None, ""),
    };
    // `adaptive` leaves the shape to the model (or its inputs): nothing to size.
    let Some((ratio_text, ratio)) =
        ratio_text.and_then(|text| parse_ratio(&text).map(|ratio| (text, ratio)))
    else {
        return Ok(Map::new());
    };
    let mut out = Map::new();
    let shaped_by = ["width", "size", "aspectRatio", "ratio"];
    if !shaped_by.iter().any(|name| properties.get(*name).is_some()) {
        // Nothing in the model's schema takes a shape: it renders its own.
        return match asked_by {
            "settings.ratio" => Err(format!(
                "Invalid parameter settings.ratio: {} renders a shape of its own and takes no \
                 ratio; leave it out or use \"adaptive\"",
                model.key
            )),
            _ => Ok(out),
        };
    }
    // A free size takes them exactly, even on a model that also reads a ratio (ModelScope's
    // Qwen-Image); a listed one gives way to the ratio there.
    if let (Some((w, h)), Some(rule)) = (asked_sides, properties.get("size"))
        && !params.contains_key("size")
        && (rule.get("enum").is_none() || properties.get("aspectRatio").is_none())
    {
        // A size asked in pixels is made exactly or refused, never resized.
        if let Some(bounds) = SizeBounds::of(rule)
            && !bounds.contains((w, h))
        {
            return Err(format!(
                "Invalid parameter width and height: {w}x{h} is outside the sizes {} renders \
                 ({bounds})",
                model.key
            ));
        }
        let size = size_value(rule, (w as f64, h as f64), &ratio_text, ratio)
            .map_err(|message| named(&message, asked_by))?;
        out.insert("size".into(), size);
        return Ok(out);
    }
    if let Some(rule) = properties.get("aspectRatio") {
        if !params.contains_key("aspectRatio") {
            out.insert(
                "aspectRatio".into(),
                listed_ratio(rule, &ratio_text, ratio, asked_by)?,
            );
        }
        return Ok(out);
    }
    let mut as_pixel = params.clone();
    if asked_sides.is_some() {
        as_pixel.remove("width");
        as_pixel.remove("height");
    }
    as_pixel.insert("aspectRatio".into(), ratio_text.into());
    size_params(model, &as_pixel).map_err(|message| named(&message, asked_by))
}

/// A refusal worded for Pixel's `aspectRatio`, naming the jobs API's field `asked_by`
/// instead; any other refusal as it is.
fn named(message: &str, asked_by: &str) -> String {
    match message
        .strip_prefix("Invalid parameter aspectRatio: ")
        .or_else(|| message.strip_prefix("aspectRatio "))
    {
        Some(rest) => format!("Invalid parameter {asked_by}: {rest}"),
        None => message.to_string(),
    }
}

/// The entry of an `aspectRatio` property's `enum` that is `ratio` (any ratio when it lists
/// none).
fn listed_ratio(rule: &Value, text: &str, ratio: f64, asked_by: &str) -> Result<Value, String> {
    let Some(listed) = rule["enum"].as_array() else {
        return Ok(text.into());
    };
    let names: Vec<&str> = listed.iter().filter_map(Value::as_str).collect();
    names
        .iter()
        .find(|name| parse_ratio(name).is_some_and(|listed| same_ratio(listed, ratio)))
        .map(|name| json!(name))
        .ok_or_else(|| {
            format!(
                "Invalid parameter {asked_by}: this model renders the aspect ratios {}, not {text}",
                names.join(", ")
            )
        })
}

/// A size level: a pixel budget (`2K`) or a short side (`720p`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Level {
    /// This many pixels in all.
    Pixels(f64),
    /// This many pixels on the short side.
    ShortSide(f64),
}

impl Level {
    fn parse(text: &str) -> Option<Level> {
        let text = text.trim();
        let number = |digits: &str| digits.parse::<u32>().ok().filter(|n| *n > 0).map(f64::from);
        if let Some(digits) = text.strip_suffix(['K', 'k']) {
            // Seed 000's levels; no model renders a `99999K`.
            let thousands = number(digits).filter(|n| [1.0, 2.0, 4.0].contains(n))?;
            return Some(Level::Pixels((thousands * 1024.0).powi(2)));
        }
        Some(Level::ShortSide(number(text.strip_suffix(['P', 'p'])?)?))
    }

    /// A height level names a landscape video size (`720p` is 1280×720).
    fn default_ratio(self) -> &'static str {
        match self {
            Level::Pixels(_) => "1:1",
            Level::ShortSide(_) => "16:9",
        }
    }

    /// Width and height at `ratio` (width over height).
    fn size(self, ratio: f64) -> (f64, f64) {
        match self {
            Level::Pixels(pixels) => ((pixels * ratio).sqrt(), (pixels / ratio).sqrt()),
            Level::ShortSide(side) if ratio >= 1.0 => (side * ratio, side),
            Level::ShortSide(side) => (side, side / ratio),
        }
    }
}

/// The ratios listed for a level a model names without sizes.
const LISTED_RATIOS: [&str; 5] = ["1:1", "16:9", "9:16", "4:3", "3:4"];

/// A model's `resolutions` in seed 000's shape, level to ratio to `W*H`, whatever its manifest
/// lists: a table is kept; a level (`2K`, `720p`) gets, at each common ratio, the size this
/// module would ask for; a size (`1536x1024`) is filed under its own ratio and the level
/// whose pixel budget is nearest its own, and of the sizes filed in one cell the one nearest
/// that budget wins. The model list shows this table and requests are sized by it, so a
/// size the list shows is the size a request gets.
pub fn seed_resolutions(listed: &Value) -> Value {
    let Some(entries) = listed.as_array() else {
        return listed.clone();
    };
    // On the step a model without a schema's `multipleOf` is asked in.
    let side = Side::of(&Value::Null);
    let mut table = Map::new();
    for entry in entries.iter().filter_map(Value::as_str) {
        if let Some(level) = Level::parse(entry) {
            let row: Map<String, Value> = LISTED_RATIOS
                .iter()
                .filter_map(|text| {
                    let (w, h) = level.size(parse_ratio(text)?);
                    let size = format!("{}*{}", side.round(w), side.round(h));
                    Some((text.to_string(), size.into()))
                })
                .collect();
            table.insert(entry.to_string(), row.into());
        } else if let Some((w, h)) = parse_size(entry) {
            let pixels = w * h;
            // Between two levels, the nearest by ratio of pixel counts: 1K up to 2K's half.
            let level = if pixels < 2.0 * 1024.0 * 1024.0 {
                "1K"
            } else if pixels < 8.0 * 1024.0 * 1024.0 {
                "2K"
            } else {
                "4K"
            };
            let budget = match Level::parse(level) {
                Some(Level::Pixels(budget)) => budget,
                _ => unreachable!("levels in K are pixel budgets"),
            };
            let off = |pixels: f64| (pixels / budget).ln().abs();
            let (w, h) = (w as u64, h as u64);
            let divisor = gcd(w, h);
            let ratio = format!("{}:{}", w / divisor, h / divisor);
            let row = table.entry(level).or_insert_with(|| json!({}));
            let nearer = row
                .get(&ratio)
                .and_then(|kept| parse_size(kept.as_str()?))
                .is_none_or(|(kw, kh)| off(pixels) < off(kw * kh));
            if nearer {
                row[ratio] = format!("{w}*{h}").into();
            }
        }
    }
    Value::Object(table)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

/// Whether a `listed` ratio (width / height) counts as the `asked` one.
pub fn same_ratio(listed: f64, asked: f64) -> bool {
    (listed / asked - 1.0).abs() <= RATIO_TOLERANCE
}

/// `16:9` as 16/9.
pub fn parse_ratio(text: &str) -> Option<f64> {
    let (w, h) = text.trim().split_once(':')?;
    let (w, h): (f64, f64) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
    (w > 0.0 && h > 0.0 && w.is_finite() && h.is_finite()).then_some(w / h)
}

/// `1280*720` or `1280x720`, in pixels.
fn parse_size(text: &str) -> Option<(f64, f64)> {
    let (w, h) = size_bounds::parse_size(text)?;
    Some((w as f64, h as f64))
}

/// The `[level][ratio]` entry of the model's `resolutions` as the model list shows them
/// ([`seed_resolutions`]).
fn table_size(model: &ModelInfo, level: &str, ratio: &str) -> Option<(f64, f64)> {
    let table = seed_resolutions(model.extra.get("resolutions")?);
    let row = table
        .as_object()?
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(level))?
        .1;
    parse_size(row.get(ratio)?.as_str()?)
}

/// The entry of a property's `enum` that matches `asked` but for letter case.
fn own_spelling(property: &Value, asked: &str) -> Option<String> {
    property["enum"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|listed| listed.eq_ignore_ascii_case(asked))
        .map(str::to_string)
}

/// A side's bounds and step from its schema.
struct Side {
    min: f64,
    max: f64,
    step: f64,
}

impl Side {
    fn of(rule: &Value) -> Side {
        let step = rule["multipleOf"]
            .as_u64()
            .filter(|m| *m > 0)
            .unwrap_or(DEFAULT_MULTIPLE) as f64;
        Side {
            min: rule["minimum"].as_f64().unwrap_or(step).max(1.0),
            max: rule["maximum"].as_f64().unwrap_or(f64::INFINITY),
            step,
        }
    }

    /// `value` on a step, within the bounds (steps inside them when they allow one).
    fn round(&self, value: f64) -> u64 {
        let lowest = (self.min / self.step).ceil() * self.step;
        let highest = (self.max / self.step).floor() * self.step;
        let stepped = ((value / self.step).round() * self.step).max(self.step);
        if lowest > highest {
            return stepped.clamp(self.min, self.max) as u64;
        }
        stepped.clamp(lowest, highest) as u64
    }
}

/// `target` scaled at the same ratio into the sides' bounds, then each side on its step.
fn fit(target: (f64, f64), width: &Value, height: &Value) -> (u64, u64) {
    let (width, height) = (Side::of(width), Side::of(height));
    let (w, h) = target;
    let room = (width.max / w).min(height.max / h);
    let needed = (width.min / w).max(height.min / h);
    // Too big shrinks; too small grows as far as the maximum allows.
    let scale = if room < 1.0 {
        room
    } else {
        needed.clamp(1.0, room)
    };
    (width.round(w * scale), height.round(h * scale))
}

/// A free `size` string for `target`, fitted into the schema's `sizeBounds` at the same ratio
/// (a ratio they cannot hold is refused); the default shows its form, else a pattern with a
/// literal `*` asks for `W*H`.
fn free_size(rule: &Value, target: (f64, f64), ratio_text: &str) -> Result<Value, String> {
    let separator = separator(rule);
    let bounds = SizeBounds::of(rule);
    let (w, h) = bounds.map_or(target, |bounds| bounds.fit(target));
    let step = DEFAULT_MULTIPLE as f64;
    let on_step = |side: f64, round: fn(f64) -> f64| (round(side / step) * step).max(step) as u64;
    // The nearest steps, else the steps below or above that stay inside the bounds.
    let sizes =
        [f64::round, f64::floor, f64::ceil].map(|round| (on_step(w, round), on_step(h, round)));
    let Some((width, height)) = sizes
        .into_iter()
        .find(|size| bounds.is_none_or(|bounds| bounds.contains(*size)))
    else {
        let bounds = bounds.unwrap_or_default();
        return Err(format!(
            "Invalid parameter aspectRatio: this model cannot render {ratio_text} ({bounds})"
        ));
    };
    Ok(json!(format!("{width}{separator}{height}")))
}

/// How a free `size` rule writes a size: `*` where its default or pattern asks for one, else
/// `x`.
fn separator(rule: &Value) -> char {
    let starred = match rule["default"].as_str() {
        Some(default) => default.contains('*'),
        None => rule["pattern"].as_str().is_some_and(|p| p.contains("\\*")),
    };
    if starred { '*' } else { 'x' }
}

/// `size` (`1024x1024`, as OpenAI's clients write it) as `model`'s free `size` writes it
/// (`1024*1024` for DashScope's); any other size, or a model whose sizes are listed, as given.
pub fn own_size_form(model: &ModelInfo, size: &str) -> String {
    let rule = &model.params_schema["properties"]["size"];
    match size_bounds::parse_size(size) {
        Some((width, height)) if rule.is_object() && rule.get("enum").is_none() => {
            format!("{width}{}{height}", separator(rule))
        }
        _ => size.to_string(),
    }
}

/// The `size` string a model's schema accepts for `target`.
fn size_value(
    rule: &Value,
    target: (f64, f64),
    ratio_text: &str,
    ratio: f64,
) -> Result<Value, String> {
    let Some(listed) = rule["enum"].as_array() else {
        return free_size(rule, target, ratio_text);
    };
    let names: Vec<&str> = listed.iter().filter_map(Value::as_str).collect();
    // Some models list ratios themselves (`16:9`, `auto`).
    if let Some(same) = names.iter().find(|name| **name == ratio_text.trim()) {
        return Ok(json!(same));
    }
    let area = target.0 * target.1;
    names
        .iter()
        .filter_map(|name| parse_size(name).map(|size| (*name, size)))
        .filter(|(_, (w, h))| same_ratio(w / h, ratio))
        .min_by(|(_, a), (_, b)| {
            let distance = |(w, h): (f64, f64)| (w * h / area).ln().abs();
            distance(*a).total_cmp(&distance(*b))
        })
        .map(|(name, _)| json!(name))
        .ok_or_else(|| {
            format!(
                "aspectRatio {ratio_text} is not a size this model renders: {}",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(properties: Value, extra: Value) -> ModelInfo {
        ModelInfo {
            key: "m".into(),
            name: "m".into(),
            kind: "image".into(),
            capabilities: vec!["image.generate".into()],
            params_schema: json!({"type": "object", "properties": properties}),
            price_hint: None,
            extra: extra.as_object().cloned().unwrap_or_default(),
        }
    }

    fn request(resolution: Option<&str>, ratio: Option<&str>) -> Map<String, Value> {
        let mut params = Map::new();
        if let Some(resolution) = resolution {
            params.insert("resolution".into(), resolution.into());
        }
        if let Some(ratio) = ratio {
            params.insert("aspectRatio".into(), ratio.into());
        }
        params
    }

    #[test]
    fn listed_resolutions_take_the_seeds_table_shape() {
        let table = json!({"1K": {"16:9": "1280*720"}});
        assert_eq!(seed_resolutions(&table), table, "a table stays as written");
        let levels = seed_resolutions(&json!(["720p", "1K"]));
        assert_eq!(levels["720p"]["16:9"], "1280*720");
        assert_eq!(levels["720p"]["9:16"], "720*1280");
        assert_eq!(levels["1K"]["1:1"], "1024*1024");
        let sizes = seed_resolutions(&json!(["1024x1024", "1536x1024", "1024x1536", "2048*2048"]));
        assert_eq!(
            sizes,
            json!({"1K": {"1:1": "1024*1024", "3:2": "1536*1024", "2:3": "1024*1536"},
                   "2K": {"1:1": "2048*2048"}})
        );
        // Of several sizes in one cell, the one nearest the level's budget is shown, and it
        // is the size a request for that cell gets.
        let small_first = json!(["256x256", "512x512", "1024x1024"]);
        assert_eq!(
            seed_resolutions(&small_first),
            json!({"1K": {"1:1": "1024*1024"}})
        );
        let listed = model(
            json!({"width": {"type": "integer", "maximum": 2048},
                   "height": {"type": "integer", "maximum": 2048}}),
            json!({"resolutions": small_first}),
        );
        assert_eq!(
            sized(&listed, Some("1K"), Some("1:1")),
            json!({"width": 1024, "height": 1024})
        );
    }

    #[test]
    fn seed_001_sizes_reach_each_model_in_its_own_terms() {
        let job = |fields: Value| fields.as_object().cloned().unwrap();
        let sized = |model: &ModelInfo, fields: Value| {
            Value::Object(job_size_params(model, &job(fields)).unwrap())
        };
        // A video model listing sizes: the seed's 9:16 at 720p is its portrait 720p size.
        let listed = model(
            json!({"size": {"type": "string", "enum": ["1280*720", "720*1280", "1920*1080"]}}),
            json!({}),
        );
        assert_eq!(
            sized(&listed, json!({"ratio": "9:16", "resolution": "720p"})),
            json!({"size": "720*1280"})
        );
        // Vendors round: DashScope's 16:9 at 480p is 832*480.
        let rounded = model(
            json!({"size": {"type": "string", "enum": ["832*480", "1280*720"]}}),
            json!({}),
        );
        assert_eq!(
            sized(&rounded, json!({"ratio": "16:9", "resolution": "480p"})),
            json!({"size": "832*480"})
        );
        let wide = job_size_params(
            &listed,
            &job(json!({"ratio": "21:9", "resolution": "720p"})),
        );
        assert_eq!(
            wide.unwrap_err(),
            "Invalid parameter settings.ratio: 21:9 is not a size this model renders: 1280*720, \
             720*1280, 1920*1080"
        );
        // A model that renders a shape of its own is not asked one it would not read.
        let own = model(json!({"resolution": {"type": "string"}}), json!({}));
        let refused = job_size_params(&own, &job(json!({"ratio": "9:16"}))).unwrap_err();
        assert!(
            refused.starts_with("Invalid parameter settings.ratio: m renders"),
            "{refused}"
        );
        assert_eq!(sized(&own, json!({"ratio": "adaptive"})), json!({}));
        // A free size takes the asked sides as they are.
        let free = model(
            json!({"size": {"type": "string", "pattern": "^[0-9]+\\*[0-9]+$", "default": "1024*1024"}}),
            json!({}),
        );
        assert_eq!(
            sized(&free, json!({"width": 1440, "height": 2560})),
            json!({"size": "1440*2560"})
        );
        // A model that reads an aspect ratio gets the sides' ratio as it lists it.
        let ratios = model(
            json!({"aspectRatio": {"type": "string", "enum": ["16:9", "1:1", "9:16"]}}),
            json!({}),
        );
        assert_eq!(
            sized(&ratios, json!({"width": 1440, "height": 2560})),
            json!({"aspectRatio": "9:16"})
        );
        let refused = job_size_params(&ratios, &job(json!({"width": 1000, "height": 1500})));
        assert_eq!(
            refused.unwrap_err(),
            "Invalid parameter width and height: this model renders the aspect ratios 16:9, \
             1:1, 9:16, not 2:3"
        );
        // Sides a model takes itself, and a ratio left to the model, change nothing.
        let sides = model(
            json!({"width": {"type": "integer"}, "height": {"type": "integer"}}),
            json!({}),
        );
        assert_eq!(
            sized(&sides, json!({"width": 512, "height": 768})),
            json!({})
        );
        assert_eq!(sized(&listed, json!({"ratio": "adaptive"})), json!({}));
    }

    fn sized(model: &ModelInfo, resolution: Option<&str>, ratio: Option<&str>) -> Value {
        Value::Object(size_params(model, &request(resolution, ratio)).unwrap())
    }

    fn refused(model: &ModelInfo, resolution: &str, ratio: &str) -> String {
        size_params(model, &request(Some(resolution), Some(ratio))).unwrap_err()
    }

    fn width_height(max: u64, step: Option<u64>) -> ModelInfo {
        let mut side = json!({"type": "integer", "minimum": 64, "maximum": max, "default": 512});
        if let Some(step) = step {
            side["multipleOf"] = step.into();
        }
        model(json!({"width": side, "height": side}), json!({}))
    }

    fn ratio_of(sized: &Value) -> f64 {
        sized["width"].as_f64().unwrap() / sized["height"].as_f64().unwrap()
    }

    #[test]
    fn width_and_height_follow_the_budget_the_ratio_and_the_step() {
        let sd = width_height(4096, Some(8));
        let wide = sized(&sd, Some("1K"), Some("16:9"));
        assert_eq!(wide, json!({"width": 1368, "height": 768}));
        assert!((ratio_of(&wide) / (16.0 / 9.0) - 1.0).abs() < 0.01);
        assert_eq!(
            sized(&sd, Some("2K"), Some("1:1")),
            json!({"width": 2048, "height": 2048})
        );
        let tall = sized(&sd, Some("1K"), Some("9:16"));
        assert_eq!(tall, json!({"width": 768, "height": 1368}));
        // The level alone is square; the ratio alone is at seed 000's default level.
        assert_eq!(
            sized(&sd, Some("1K"), None),
            json!({"width": 1024, "height": 1024})
        );
        assert_eq!(sized(&sd, None, Some("16:9")), wide);
        // A height level sets the short side.
        assert_eq!(
            sized(&sd, Some("720p"), None),
            json!({"width": 1280, "height": 720})
        );
        let coarse = sized(&width_height(4096, Some(64)), Some("1K"), Some("16:9"));
        assert_eq!(coarse, json!({"width": 1344, "height": 768}));
    }

    #[test]
    fn sizes_stay_within_the_schema_at_the_same_ratio() {
        let small = width_height(2048, Some(8));
        let wide = sized(&small, Some("4K"), Some("16:9"));
        assert_eq!(wide, json!({"width": 2048, "height": 1152}));
        assert_eq!(
            sized(&small, Some("4K"), Some("1:1")),
            json!({"width": 2048, "height": 2048})
        );
        let big_only = model(
            json!({"width": {"type": "integer", "minimum": 1024, "maximum": 4096},
                   "height": {"type": "integer", "minimum": 1024, "maximum": 4096}}),
            json!({}),
        );
        let raised = sized(&big_only, Some("1K"), Some("16:9"));
        assert_eq!(raised["height"], 1024);
        assert!(
            (ratio_of(&raised) / (16.0 / 9.0) - 1.0).abs() < 0.01,
            "{raised}"
        );
        // A ratio the bounds cannot hold is refused, not bent; a level no model has, too.
        let error = refused(&small, "1K", "1000:1");
        assert!(error.contains("cannot render 1000:1"), "{error}");
        let error = refused(&small, "99999K", "1:1");
        assert!(error.contains("must be 1K, 2K, 4K"), "{error}");
    }

    #[test]
    fn the_models_own_table_wins() {
        let tabled = model(
            json!({"width": {"type": "integer"}, "height": {"type": "integer"}}),
            json!({"resolutions": {"1K": {"16:9": "1280*720"}, "2K": {"16:9": "2560x1440"}}}),
        );
        assert_eq!(
            sized(&tabled, Some("1K"), Some("16:9")),
            json!({"width": 1280, "height": 720})
        );
        assert_eq!(
            sized(&tabled, Some("2k"), Some("16:9")),
            json!({"width": 2560, "height": 1440})
        );
        // A ratio the table lacks falls back to the budget.
        assert_eq!(
            sized(&tabled, Some("1K"), Some("1:1")),
            json!({"width": 1024, "height": 1024})
        );
    }

    #[test]
    fn size_strings_take_the_schemas_form() {
        let listed = model(
            json!({"size": {"type": "string", "enum": ["832*480", "624*624", "1280*720", "1920*1080", "1080*1920"]}}),
            json!({}),
        );
        assert_eq!(
            sized(&listed, Some("1K"), Some("16:9")),
            json!({"size": "1280*720"})
        );
        assert_eq!(
            sized(&listed, Some("1080p"), None),
            json!({"size": "1920*1080"})
        );
        assert_eq!(
            sized(&listed, Some("2K"), Some("9:16")),
            json!({"size": "1080*1920"})
        );
        let error = refused(&listed, "1K", "4:3");
        assert!(
            error.starts_with("aspectRatio 4:3 is not a size"),
            "{error}"
        );

        let ratios = model(
            json!({"size": {"type": "string", "enum": ["auto", "1:1", "16:9"]}}),
            json!({}),
        );
        assert_eq!(
            sized(&ratios, Some("1K"), Some("16:9")),
            json!({"size": "16:9"})
        );

        let starred = model(
            json!({"size": {"type": "string", "pattern": "^[0-9]+\\*[0-9]+$", "default": "1024*1024"}}),
            json!({}),
        );
        assert_eq!(
            sized(&starred, Some("1K"), Some("16:9")),
            json!({"size": "1368*768"})
        );
        let bare_pattern = model(
            json!({"size": {"type": "string", "pattern": "^[0-9]+\\*[0-9]+$"}}),
            json!({}),
        );
        assert_eq!(
            sized(&bare_pattern, Some("1K"), Some("1:1")),
            json!({"size": "1024*1024"})
        );
        let crossed = model(
            json!({"size": {"type": "string", "pattern": "^[0-9]+x[0-9]+$"}}),
            json!({}),
        );
        assert_eq!(
            sized(&crossed, Some("1K"), Some("1:1")),
            json!({"size": "1024x1024"})
        );
    }

    #[test]
    fn pixel_speaking_models_and_explicit_sizes_are_left_alone() {
        let pixel = model(
            json!({"aspectRatio": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"}}),
            json!({}),
        );
        assert_eq!(sized(&pixel, Some("2K"), Some("16:9")), json!({}));
        let sd = width_height(2048, Some(8));
        let mut given = request(Some("1K"), Some("16:9"));
        given.insert("width".into(), 640.into());
        assert_eq!(size_params(&sd, &given).unwrap(), Map::new());
        assert_eq!(sized(&sd, None, None), json!({}));
    }

    #[test]
    fn ratio_and_resolution_reach_models_in_their_own_words() {
        let video = model(
            json!({"ratio": {"type": "string", "enum": ["16:9", "9:16"]},
                   "resolution": {"type": "string", "enum": ["720P", "1080P"]}}),
            json!({}),
        );
        assert_eq!(
            sized(&video, Some("720p"), Some("9:16")),
            json!({"ratio": "9:16", "resolution": "720P"})
        );
    }

    #[test]
    fn malformed_levels_and_ratios_are_refused_where_they_matter() {
        let sd = width_height(2048, Some(8));
        let error = refused(&sd, "huge", "16:9");
        assert!(error.starts_with("Invalid parameter resolution"), "{error}");
        let error = refused(&sd, "1K", "wide");
        assert!(
            error.starts_with("Invalid parameter aspectRatio"),
            "{error}"
        );
        // A model without a size parameter is not sized at all.
        let plain = model(json!({"duration": {"type": "integer"}}), json!({}));
        assert_eq!(sized(&plain, Some("huge"), Some("wide")), json!({}));
    }

    /// A free size with `sizeBounds` (Wan: 512 to 1440 a side) gets the level's size fitted
    /// into them at the asked ratio; a ratio they cannot hold, or a seed 001 size in pixels
    /// outside them, is refused naming what the client sent.
    #[test]
    fn a_free_size_is_fitted_into_its_bounds_or_refused() {
        let wan = model(
            json!({"size": {"type": "string", "default": "1024*1024",
                            "sizeBounds": {"minSide": 512, "maxSide": 1440, "maxRatio": 4}}}),
            json!({}),
        );
        assert_eq!(
            sized(&wan, Some("1K"), Some("1:1")),
            json!({"size": "1024*1024"})
        );
        assert_eq!(
            sized(&wan, Some("2K"), Some("1:1")),
            json!({"size": "1440*1440"})
        );
        assert_eq!(
            sized(&wan, Some("4K"), Some("16:9")),
            json!({"size": "1440*808"})
        );
        assert_eq!(
            sized(&wan, Some("480p"), Some("1:1")),
            json!({"size": "512*512"})
        );
        assert_eq!(
            refused(&wan, "1K", "8:1"),
            "Invalid parameter aspectRatio: this model cannot render 8:1 (512 to 1440 pixels a \
             side, a long side at most 4 times the short one)"
        );
        let job = |fields: Value| job_size_params(&wan, fields.as_object().unwrap());
        assert_eq!(
            job(json!({"width": 1440, "height": 2560})).unwrap_err(),
            "Invalid parameter width and height: 1440x2560 is outside the sizes m renders (512 \
             to 1440 pixels a side, a long side at most 4 times the short one)"
        );
        assert_eq!(
            job(json!({"width": 1440, "height": 1024})).unwrap(),
            *json!({"size": "1440*1024"}).as_object().unwrap()
        );
        assert_eq!(
            job(json!({"ratio": "9:16", "resolution": "2K"})).unwrap(),
            *json!({"size": "808*1440"}).as_object().unwrap()
        );
        assert!(
            job(json!({"width": 1440}))
                .unwrap_err()
                .contains("give both, or neither")
        );
        // A free size beside a ratio (ModelScope's Qwen-Image) still takes them exactly.
        let both = model(
            json!({"aspectRatio": {"type": "string", "enum": ["1:1", "16:9"]},
                   "size": {"type": "string", "pattern": "^[0-9]{2,4}x[0-9]{2,4}$",
                            "sizeBounds": {"minSide": 64, "maxSide": 1664}}}),
            json!({}),
        );
        let job = |fields: Value| job_size_params(&both, fields.as_object().unwrap());
        assert_eq!(
            job(json!({"width": 1600, "height": 800})).unwrap(),
            *json!({"size": "1600x800"}).as_object().unwrap()
        );
        assert!(
            job(json!({"width": 3000, "height": 3000}))
                .unwrap_err()
                .contains("64 to 1664")
        );
        assert_eq!(
            job(json!({"ratio": "16:9", "resolution": "1K"})).unwrap(),
            *json!({"aspectRatio": "16:9"}).as_object().unwrap()
        );
        assert_eq!(own_size_form(&both, "1024x1024"), "1024x1024");
        assert_eq!(own_size_form(&wan, "1024x1024"), "1024*1024");
        // No bounds: the level's size as it is.
        let free = model(
            json!({"size": {"type": "string", "default": "1024*1024"}}),
            json!({}),
        );
        assert_eq!(
            sized(&free, Some("2K"), Some("1:1")),
            json!({"size": "2048*2048"})
        );
    }
}
