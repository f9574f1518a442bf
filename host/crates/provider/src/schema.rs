//! A model's parameter schema, compiled once, and the one check every request's parameters
//! pass before a task exists.
//!
//! Invariants:
//! - [`ParamsSchema::compile`] refuses a schema that uses a keyword easel cannot check (a typo
//!   such as `minimun`, a custom keyword, an unknown `format`), so a manifest that promises a
//!   limit is never loaded without it being enforced. `x-`-prefixed keys are annotations and
//!   pass. easel adds one keyword, [`size_bounds`] (`sizeBounds`: what a free size string
//!   may ask for).
//! - [`ParamsSchema::apply`] checks the whole JSON Schema (the `jsonschema` crate, formats
//!   included) after two translation steps on the top-level properties: numbers and booleans
//!   sent as strings (form fields, `"n": "4"`) become the declared type, and a missing or
//!   null parameter takes its `default`. What it returns is the request as it will run.
//! - A required parameter that is blank (an empty string or list) counts as missing.
//! - Messages name the parameter first (`Invalid parameter width: must be a multiple of 8`,
//!   `Missing required parameter: prompt`), so every API can show them as they are.

use serde_json::{Map, Value};

pub mod size_bounds;

/// Keywords the validator enforces or that only annotate; anything else is refused at load.
const KNOWN_KEYWORDS: &[&str] = &[
    // validation
    "type",
    "enum",
    "const",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "format",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxContains",
    "minContains",
    "contains",
    "items",
    "prefixItems",
    "maxProperties",
    "minProperties",
    "required",
    "dependentRequired",
    "properties",
    "patternProperties",
    "additionalProperties",
    "propertyNames",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "$ref",
    // easel's own
    size_bounds::KEYWORD,
    "$defs",
    "definitions",
    // annotations and identifiers
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Keywords whose value is one subschema.
const SUBSCHEMA: &[&str] = &[
    "items",
    "contains",
    "additionalProperties",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
];
/// Keywords whose value is a list of subschemas.
const SUBSCHEMA_LISTS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value maps names to subschemas.
const SUBSCHEMA_MAPS: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

/// Parameter names under which a model counts the outputs one request makes.
const OUTPUT_COUNT_PARAMS: [&str; 2] = ["n", "num_images"];

/// A parameter a request got wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidParam {
    /// The top-level parameter at fault, when one is.
    pub param: Option<String>,
    /// Where inside `param` the fault is, outermost first: list indexes (numbers) and object
    /// keys (strings); empty when it is the parameter itself.
    pub within: Vec<Value>,
    /// A client-facing sentence that names it (and where inside it, as `loras[0].weight`).
    pub message: String,
}

impl InvalidParam {
    /// What the message says was wrong inside the first step of `within` (a list entry), without
    /// naming the parameter or the entry: `Invalid parameter loras: loras[1].weight must be …`
    /// says `weight must be …`; a message about the parameter itself, after its name. For an API
    /// that names the entry its own way.
    pub fn said_of_entry(&self) -> &str {
        let Some(name) = &self.param else {
            return &self.message;
        };
        let said = self
            .message
            .strip_prefix(&format!("Invalid parameter {name}: "))
            .unwrap_or(&self.message);
        let Some(entry) = self.within.first() else {
            return said;
        };
        let entry = format!("{name}{}", written_path(std::slice::from_ref(entry)));
        said.strip_prefix(&entry)
            .map_or(said, |rest| rest.trim_start_matches(['.', ' ']))
    }

    /// The same refusal about `to` when it named `from`: a field the client sent under one
    /// name and the model reads under another.
    pub fn renamed(mut self, from: &str, to: &str) -> Self {
        if self.param.as_deref() == Some(from) {
            self.param = Some(to.into());
            self.message = self.message.replacen(
                &format!("parameter {from}:"),
                &format!("parameter {to}:"),
                1,
            );
        }
        self
    }
}

/// A model's parameter schema, checked and compiled.
#[derive(Debug)]
pub struct ParamsSchema {
    raw: Value,
    validator: jsonschema::Validator,
}

impl ParamsSchema {
    /// Compiles `schema`, refusing keywords easel cannot check; the error says which.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        refuse_unknown_keywords(schema, "")?;
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .should_ignore_unknown_formats(false)
            .with_keyword(size_bounds::KEYWORD, size_bounds::compile)
            .build(schema)
            .map_err(|error| match error.instance_path.to_string() {
                at if at.is_empty() => format!("invalid parameter schema: {error}"),
                // Which part of the schema: the meta-schema's words alone rarely say.
                at => format!("invalid parameter schema at {at}: {error}"),
            })?;
        Ok(Self {
            raw: schema.clone(),
            validator,
        })
    }

    /// The schema as written.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Translates `params` (string numbers, defaults), then checks them against the whole
    /// schema.
    pub fn apply(&self, params: &mut Map<String, Value>) -> Result<(), InvalidParam> {
        for name in self.required() {
            if params.get(name).is_none_or(is_blank) {
                return Err(InvalidParam {
                    param: Some(name.to_string()),
                    message: format!("Missing required parameter: {name}"),
                    ..Default::default()
                });
            }
        }
        // A count the model does not declare would reach it unread: one output would come back
        // where several (or none) were asked for.
        if self.count_param().is_none() {
            for name in OUTPUT_COUNT_PARAMS {
                if let Some(count) = params.get(name).and_then(Value::as_u64).filter(|n| *n != 1) {
                    return Err(InvalidParam {
                        param: Some(name.to_string()),
                        message: format!(
                            "Invalid parameter {name}: this model makes one output per request, not {count}"
                        ),
                        ..Default::default()
                    });
                }
            }
        }
        if let Some(properties) = self.raw.get("properties").and_then(Value::as_object) {
            for (name, rule) in properties {
                let kind = rule.get("type").and_then(Value::as_str);
                match params.get_mut(name) {
                    Some(value) if !value.is_null() => coerce(kind, value),
                    _ => match rule.get("default") {
                        Some(default) => {
                            params.insert(name.clone(), default.clone());
                        }
                        None => {
                            params.remove(name);
                        }
                    },
                }
            }
        }
        let instance = Value::Object(std::mem::take(params));
        let first = self
            .validator
            .iter_errors(&instance)
            .next()
            .map(|error| self.describe(&error));
        let Value::Object(checked) = instance else {
            unreachable!("built as an object above")
        };
        *params = checked;
        match first {
            Some(invalid) => Err(invalid),
            None => Ok(()),
        }
    }

    /// How many outputs a request with these (checked) parameters makes: the value of the
    /// count parameter the schema declares, else one.
    pub fn output_count(&self, params: &Map<String, Value>) -> u32 {
        self.count_param()
            .and_then(|name| params.get(name))
            .and_then(Value::as_u64)
            .map_or(1, |count| u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// The parameter among [`OUTPUT_COUNT_PARAMS`] the schema declares, if any.
    fn count_param(&self) -> Option<&'static str> {
        let properties = self.raw.get("properties")?;
        OUTPUT_COUNT_PARAMS
            .into_iter()
            .find(|name| properties.get(name).is_some())
    }

    fn required(&self) -> impl Iterator<Item = &str> {
        self.raw
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    }

    /// Words one validation error as the APIs show it.
    fn describe(&self, error: &jsonschema::ValidationError<'_>) -> InvalidParam {
        use jsonschema::error::{TypeKind, ValidationErrorKind as Kind};
        let mut path = error
            .instance_path
            .as_str()
            .split('/')
            .skip(1)
            .map(|segment| {
                let segment = segment.replace("~1", "/").replace("~0", "~");
                match segment.parse::<u64>() {
                    Ok(index) => Value::from(index),
                    Err(_) => Value::from(segment),
                }
            });
        let param = path.next().map(|name| plain(&name));
        let within: Vec<Value> = path.collect();
        let rule_path = error
            .schema_path
            .as_str()
            .rsplit_once('/')
            .map_or("", |(parent, _)| parent);
        let rule = self.raw.pointer(rule_path).unwrap_or(&Value::Null);
        let detail = match &error.kind {
            Kind::Required { property } => {
                let name = plain(property);
                // Missing inside a parameter: named by its whole path, the parameter at fault.
                let Some(outer) = param else {
                    return InvalidParam {
                        message: format!("Missing required parameter: {name}"),
                        param: Some(name),
                        ..Default::default()
                    };
                };
                return InvalidParam {
                    message: format!(
                        "Missing required parameter: {outer}{}.{name}",
                        written_path(&within)
                    ),
                    param: Some(outer),
                    within,
                };
            }
            Kind::Type {
                kind: TypeKind::Single(kind),
            } => format!("must be of type {kind}"),
            Kind::Enum { options } => {
                let listed: Vec<String> = options
                    .as_array()
                    .map(|all| all.iter().map(plain).collect())
                    .unwrap_or_default();
                format!("must be one of {}", listed.join(", "))
            }
            Kind::Minimum { .. } | Kind::Maximum { .. } => {
                let min = rule.get("minimum").and_then(written_number);
                let max = rule.get("maximum").and_then(written_number);
                match (min, max) {
                    (Some(a), Some(b)) => format!("must be between {a} and {b}"),
                    (Some(a), None) => format!("must be at least {a}"),
                    (None, Some(b)) => format!("must be at most {b}"),
                    (None, None) => error.to_string(),
                }
            }
            Kind::MultipleOf { multiple_of } => format!("must be a multiple of {multiple_of}"),
            Kind::Pattern { pattern } => format!("must match the pattern {pattern}"),
            Kind::MinLength { limit } => format!("must be at least {limit} characters long"),
            Kind::MaxLength { limit } => format!("must be at most {limit} characters long"),
            Kind::MinItems { limit } => format!("must have at least {limit} items"),
            Kind::MaxItems { limit } => format!("must have at most {limit} items"),
            _ => error.to_string(),
        };
        let message = match &param {
            Some(name) if within.is_empty() => format!("Invalid parameter {name}: {detail}"),
            Some(name) => format!(
                "Invalid parameter {name}: {name}{} {detail}",
                written_path(&within)
            ),
            None => format!("Invalid parameters: {detail}"),
        };
        InvalidParam {
            param,
            within,
            message,
        }
    }
}

/// A schema's number as a client reads it: an integer exactly (`9223372036854775807`, not
/// its float), a whole float without its `.0`.
fn written_number(number: &Value) -> Option<String> {
    let number = number.as_number()?;
    if number.is_f64() {
        let float = number.as_f64()?;
        if float.fract() == 0.0 && float.abs() < 9_007_199_254_740_992.0 {
            return Some(format!("{}", float as i64));
        }
    }
    Some(number.to_string())
}

/// A path inside a parameter as code would write it: `[0].weight`.
fn written_path(within: &[Value]) -> String {
    within
        .iter()
        .map(|step| match step {
            Value::Number(index) => format!("[{index}]"),
            key => format!(".{}", plain(key)),
        })
        .collect()
}

/// Walks every subschema and refuses keys outside [`KNOWN_KEYWORDS`].
fn refuse_unknown_keywords(schema: &Value, at: &str) -> Result<(), String> {
    let Some(object) = schema.as_object() else {
        // `true`/`false` are schemas too; anything else is the validator's to refuse.
        return Ok(());
    };
    for (key, value) in object {
        let here = format!("{at}/{key}");
        if key.starts_with("x-") {
            continue;
        }
        if !KNOWN_KEYWORDS.contains(&key.as_str()) {
            return Err(format!(
                "parameter schema uses {key:?} at {here}, a keyword easel cannot check"
            ));
        }
        if SUBSCHEMA.contains(&key.as_str()) {
            refuse_unknown_keywords(value, &here)?;
        } else if SUBSCHEMA_LISTS.contains(&key.as_str()) {
            for (index, item) in value.as_array().into_iter().flatten().enumerate() {
                refuse_unknown_keywords(item, &format!("{here}/{index}"))?;
            }
        } else if SUBSCHEMA_MAPS.contains(&key.as_str()) {
            for (name, item) in value.as_object().into_iter().flatten() {
                refuse_unknown_keywords(item, &format!("{here}/{name}"))?;
            }
        }
    }
    Ok(())
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.trim().is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// Turns a string into the declared scalar type when it reads as one, and a whole float into
/// an integer where an integer is declared (JSON Schema counts `4.0` as an integer; the
/// providers and the price read it as one).
fn coerce(kind: Option<&str>, value: &mut Value) {
    if kind == Some("integer")
        && let Some(number) = value.as_f64()
        && !(value.is_i64() || value.is_u64())
        && number.fract() == 0.0
        && number.abs() < 9.0e15
    {
        *value = Value::from(number as i64);
        return;
    }
    let Some(text) = value.as_str().map(str::trim) else {
        return;
    };
    let parsed = match kind {
        Some("integer") => text.parse::<i64>().ok().map(Value::from),
        Some("number") => text.parse::<f64>().ok().map(Value::from),
        Some("boolean") => match text {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    };
    if let Some(parsed) = parsed {
        *value = parsed;
    }
}

fn plain(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_invalid_schema_is_refused_naming_where() {
        let refused = ParamsSchema::compile(&json!({
            "type": "object",
            "properties": {"x": {"type": "strin"}}
        }))
        .err()
        .unwrap();
        assert!(refused.contains("at /properties/x/type"), "{refused}");
    }

    /// A free size string is held to the `sizeBounds` its schema states; bounds written wrong
    /// are refused at load, as any keyword is.
    #[test]
    fn a_free_size_keeps_within_its_stated_bounds() {
        let bounded = ParamsSchema::compile(&json!({
            "type": "object",
            "properties": {"size": {"type": "string", "pattern": "^[0-9]+\\*[0-9]+$",
                                    "sizeBounds": {"minSide": 512, "maxSide": 1440}}}
        }))
        .unwrap();
        let apply = |size: &str| {
            let mut params = json!({"size": size}).as_object().unwrap().clone();
            bounded.apply(&mut params).map_err(|e| (e.param, e.message))
        };
        assert_eq!(apply("1440*1024"), Ok(()));
        assert_eq!(
            apply("1440*2560"),
            Err((
                Some("size".into()),
                "Invalid parameter size: 1440*2560 is outside the sizes this model renders \
                 (512 to 1440 pixels a side)"
                    .into()
            ))
        );
        assert!(
            apply("1440x1024")
                .unwrap_err()
                .1
                .contains("must match the pattern")
        );
        let written_wrong = ParamsSchema::compile(&json!({
            "type": "object",
            "properties": {"size": {"type": "string", "sizeBounds": {"maxSides": 1440}}}
        }))
        .err()
        .unwrap();
        assert!(written_wrong.contains("maxSides"), "{written_wrong}");
    }

    fn schema() -> ParamsSchema {
        ParamsSchema::compile(&json!({
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "string", "enum": ["832*480", "1920*1080"]},
                "duration": {"type": "integer", "minimum": 5, "maximum": 15, "default": 15},
                "off_peak": {"type": "string", "enum": ["Y", "N"], "default": "N"},
                "width": {"type": "integer", "minimum": 64, "multipleOf": 8},
                "n": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
                "style": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                "refs": {"type": "array", "minItems": 1, "items": {"type": "string"}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn bounds_read_as_written_and_a_missing_field_is_named_by_its_path() {
        let schema = ParamsSchema::compile(&json!({"type": "object", "properties": {
            "seed": {"type": "integer", "minimum": 0, "maximum": 9_223_372_036_854_775_807_i64},
            "temperature": {"type": "number", "minimum": 0.0, "maximum": 2.0},
            "response_format": {"type": "object", "properties": {"type": {}},
                                "if": {"properties": {"type": {"const": "json_schema"}}},
                                "then": {"required": ["json_schema"]}}
        }}))
        .unwrap();
        let refused = |params: Value| {
            let mut params = params.as_object().unwrap().clone();
            schema.apply(&mut params).unwrap_err()
        };
        let seed = refused(json!({"seed": -1}));
        assert_eq!(
            seed.message,
            "Invalid parameter seed: must be between 0 and 9223372036854775807"
        );
        let temperature = refused(json!({"temperature": 3}));
        assert_eq!(
            temperature.message,
            "Invalid parameter temperature: must be between 0 and 2"
        );
        let format = refused(json!({"response_format": {"type": "json_schema"}}));
        assert_eq!(format.param.as_deref(), Some("response_format"));
        assert_eq!(
            format.message,
            "Missing required parameter: response_format.json_schema"
        );
    }

    fn run(params: Value) -> Result<Map<String, Value>, String> {
        let mut params = params.as_object().unwrap().clone();
        schema()
            .apply(&mut params)
            .map(|()| params)
            .map_err(|e| e.message)
    }

    /// A model that declares no count refuses several outputs instead of making one.
    #[test]
    fn a_count_the_model_does_not_declare_is_refused_unless_one() {
        let single = ParamsSchema::compile(&json!({"type": "object", "properties": {"seed": {}}}));
        let apply = |params: Value| {
            let mut params = params.as_object().unwrap().clone();
            single.as_ref().unwrap().apply(&mut params)
        };
        let refused = apply(json!({"n": 3})).unwrap_err();
        assert_eq!(refused.param.as_deref(), Some("n"));
        assert_eq!(
            refused.message,
            "Invalid parameter n: this model makes one output per request, not 3"
        );
        assert_eq!(
            apply(json!({"num_images": 2}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("num_images")
        );
        assert!(apply(json!({"n": 1})).is_ok());
        assert_eq!(
            apply(json!({"n": 0})).unwrap_err().param.as_deref(),
            Some("n")
        );
        // Declared, the schema's own range decides.
        assert!(run(json!({"size": "832*480", "n": 3})).is_ok());
    }

    #[test]
    fn fills_defaults_and_keeps_unknown_parameters() {
        let params = run(json!({"size": "832*480", "seed": 7})).unwrap();
        assert_eq!(params["duration"], 15);
        assert_eq!(params["off_peak"], "N");
        assert_eq!(params["seed"], 7);
    }

    #[test]
    fn names_the_missing_parameter() {
        assert_eq!(
            run(json!({"size": " "})).unwrap_err(),
            "Missing required parameter: size"
        );
        assert_eq!(
            run(json!({"n": 2})).unwrap_err(),
            "Missing required parameter: size"
        );
    }

    #[test]
    fn refuses_values_outside_enums_and_ranges() {
        assert_eq!(
            run(json!({"size": "1*1"})).unwrap_err(),
            "Invalid parameter size: must be one of 832*480, 1920*1080"
        );
        assert_eq!(
            run(json!({"size": "832*480", "duration": 16})).unwrap_err(),
            "Invalid parameter duration: must be between 5 and 15"
        );
        assert_eq!(
            run(json!({"size": "832*480", "duration": 5.5})).unwrap_err(),
            "Invalid parameter duration: must be of type integer"
        );
    }

    #[test]
    fn honours_every_keyword_not_just_the_common_ones() {
        let error = |params| {
            let mut params = Value::as_object(&params).unwrap().clone();
            schema().apply(&mut params).unwrap_err()
        };
        let width = error(json!({"size": "832*480", "width": 100}));
        assert_eq!(width.param.as_deref(), Some("width"));
        assert_eq!(
            width.message,
            "Invalid parameter width: must be a multiple of 8"
        );
        assert_eq!(
            error(json!({"size": "832*480", "style": "Noir"})).message,
            "Invalid parameter style: must match the pattern ^[a-z]+$"
        );
        assert_eq!(
            error(json!({"size": "832*480", "style": "abcdefghij"})).message,
            "Invalid parameter style: must be at most 8 characters long"
        );
        assert_eq!(
            error(json!({"size": "832*480", "refs": []})).message,
            "Invalid parameter refs: must have at least 1 items"
        );
        // Inside a parameter, the message says where, and `within` holds the way there.
        let inside = error(json!({"size": "832*480", "refs": ["a", 3]}));
        assert_eq!(
            inside.message,
            "Invalid parameter refs: refs[1] must be of type string"
        );
        assert_eq!(inside.within, [json!(1)]);
        assert_eq!(inside.said_of_entry(), "must be of type string");
    }

    #[test]
    fn form_fields_and_whole_floats_become_numbers() {
        let params = run(json!({"size": "832*480", "duration": "10", "n": "4"})).unwrap();
        assert_eq!(params["duration"], 10);
        assert_eq!(params["n"], 4);
        let params = run(json!({"size": "832*480", "n": 3.0})).unwrap();
        assert!(params["n"].is_u64() || params["n"].is_i64());
    }

    #[test]
    fn counts_outputs_from_the_declared_parameter() {
        let schema = schema();
        let mut params = json!({"size": "832*480", "n": "4"})
            .as_object()
            .unwrap()
            .clone();
        schema.apply(&mut params).unwrap();
        assert_eq!(schema.output_count(&params), 4);
        // `num_images` is not declared here: it makes nothing more.
        let undeclared = json!({"size": "832*480", "num_images": 9, "n": 1});
        assert_eq!(schema.output_count(undeclared.as_object().unwrap()), 1);
        let sd = ParamsSchema::compile(&json!({"properties": {"num_images": {"type": "integer"}}}))
            .unwrap();
        let params = json!({"num_images": 4});
        assert_eq!(sd.output_count(params.as_object().unwrap()), 4);
    }

    #[test]
    fn refuses_keywords_it_cannot_check() {
        let typo = json!({"properties": {"width": {"type": "integer", "minimun": 8}}});
        let error = ParamsSchema::compile(&typo).unwrap_err();
        assert!(error.contains("\"minimun\""), "{error}");
        assert!(error.contains("/properties/width/minimun"), "{error}");
        let format = json!({"properties": {"when": {"type": "string", "format": "lunar-date"}}});
        assert!(ParamsSchema::compile(&format).is_err());
        let annotated =
            json!({"properties": {"w": {"type": "integer", "x-ui": "slider", "title": "Width"}}});
        assert!(ParamsSchema::compile(&annotated).is_ok());
    }
}
