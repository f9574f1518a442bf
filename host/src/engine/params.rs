//! Request parameters checked against a model's JSON Schema, the one place every API
//! validates them.
//!
//! Covers the part of JSON Schema that model manifests use: `type`, `enum`, `minimum`,
//! `maximum`, `required`, `default` and `items`. A schema that says nothing about a parameter
//! lets it through unchanged (plugins translate what they know); defaults are filled in so the
//! stored request is the one that ran. Messages follow llmage's wording
//! (`Missing required parameter: prompt`) so every dialect can show them as they are.

use serde_json::{Map, Value};

/// Checks `params` against `schema` and fills in defaults; the error is a client-facing message.
pub fn validate(schema: &Value, params: &mut Map<String, Value>) -> Result<(), String> {
    let properties = schema.get("properties").and_then(Value::as_object);
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if params.get(name).is_none_or(is_blank) {
            return Err(format!("Missing required parameter: {name}"));
        }
    }
    let Some(properties) = properties else {
        return Ok(());
    };
    for (name, rule) in properties {
        match params.get_mut(name) {
            Some(value) if !value.is_null() => check(name, rule, value)?,
            _ => {
                if let Some(default) = rule.get("default") {
                    params.insert(name.clone(), default.clone());
                }
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

/// Checks one value; numbers sent as strings (form fields) become numbers first.
fn check(name: &str, rule: &Value, value: &mut Value) -> Result<(), String> {
    let kind = rule.get("type").and_then(Value::as_str);
    coerce(kind, value);
    let type_ok = match kind {
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some("array") => value.is_array(),
        Some("object") => value.is_object(),
        _ => true,
    };
    if !type_ok {
        let kind = kind.unwrap_or("value");
        return Err(format!("Invalid parameter {name}: must be of type {kind}"));
    }
    if let Some(allowed) = rule.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let listed: Vec<String> = allowed.iter().map(plain).collect();
        return Err(format!(
            "Invalid parameter {name}: must be one of {}",
            listed.join(", ")
        ));
    }
    if let Some(number) = value.as_f64() {
        let min = rule.get("minimum").and_then(Value::as_f64);
        let max = rule.get("maximum").and_then(Value::as_f64);
        if min.is_some_and(|m| number < m) || max.is_some_and(|m| number > m) {
            let range = match (min, max) {
                (Some(a), Some(b)) => format!("between {a} and {b}"),
                (Some(a), None) => format!("at least {a}"),
                (None, Some(b)) => format!("at most {b}"),
                (None, None) => unreachable!("a bound was broken"),
            };
            return Err(format!("Invalid parameter {name}: must be {range}"));
        }
    }
    if let (Some(items), Some(values)) = (rule.get("items"), value.as_array_mut()) {
        for item in values {
            check(name, items, item)?;
        }
    }
    Ok(())
}

fn coerce(kind: Option<&str>, value: &mut Value) {
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

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "string", "enum": ["832*480", "1920*1080"]},
                "duration": {"type": "integer", "minimum": 5, "maximum": 15, "default": 15},
                "off_peak": {"type": "string", "enum": ["Y", "N"], "default": "N"}
            }
        })
    }

    fn run(params: Value) -> Result<Map<String, Value>, String> {
        let mut params = params.as_object().unwrap().clone();
        validate(&schema(), &mut params).map(|()| params)
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
    fn form_fields_become_numbers() {
        let params = run(json!({"size": "832*480", "duration": "10"})).unwrap();
        assert_eq!(params["duration"], 10);
    }
}
