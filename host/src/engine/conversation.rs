//! What a chat's conversation must be, checked at the front door for every dialect.
//!
//! Invariants:
//! - Every message is an object with a `role` OpenAI defines (`system`, `developer`, `user`,
//!   `assistant`, `tool`) and a `content` that is a string or a list of typed parts; only an
//!   assistant message that records tool calls may go without content, and a `tool` message
//!   names the call it answers (`tool_call_id`).
//! - Parameters that would ask for an answer the relay cannot carry are refused, never
//!   dropped: the relay answers one choice of text and tool calls, so `n` above 1, log
//!   probabilities, the legacy `functions`, `tools` for a model that does not make tool calls
//!   (its schema does not declare them, or its plugin's contract has none), a tool choice
//!   without tools, and a `response_format` other than text for a model whose schema does not
//!   declare one (its plugin would drop it) are a 400 naming the parameter, not a 200 that
//!   quietly lacks them.
//! - The token cap reaches the model under the name its schema declares: OpenAI's current
//!   `max_completion_tokens` becomes `max_tokens` for a model that takes only that.

use serde_json::{Map, Value};

use crate::engine::provider::schema::InvalidParam;

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// Parameters that ask for tool calls, which only a model declaring `tools` answers.
const TOOL_PARAMS: [&str; 3] = ["tools", "tool_choice", "parallel_tool_calls"];

/// OpenAI's deprecated function calling, whose answer (`function_call`) the relay has no
/// place for.
const LEGACY_FUNCTION_PARAMS: [&str; 2] = ["functions", "function_call"];

/// What a chat model answers beyond text, as its schema and its provider say.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answers {
    /// Tool calls: its schema declares `tools` and its provider makes them.
    pub tool_calls: bool,
    /// An answer format: its schema declares `response_format`.
    pub formats: bool,
}

impl Answers {
    /// What a model with params `schema` answers, its provider making tool calls or not.
    pub fn of(schema: &Value, makes_tool_calls: bool) -> Self {
        Self {
            tool_calls: makes_tool_calls && declares(schema, "tools"),
            formats: declares(schema, "response_format"),
        }
    }
}

/// Whether a params `schema` declares the parameter `name`.
fn declares(schema: &Value, name: &str) -> bool {
    schema
        .get("properties")
        .is_some_and(|properties| properties.get(name).is_some())
}

/// OpenAI's SDKs send the token cap as `max_completion_tokens` now (`max_tokens` is
/// deprecated); a model whose schema takes it as `max_tokens` only gets it under that name, so
/// the cap reaches the vendor instead of being dropped as an undeclared parameter. Set under
/// both names, the current one wins, as OpenAI's own models take it.
pub fn name_the_token_cap(params: &mut Map<String, Value>, schema: &Value) {
    if declares(schema, "max_completion_tokens") || !declares(schema, "max_tokens") {
        return;
    }
    if let Some(cap) = params
        .remove("max_completion_tokens")
        .filter(|cap| !cap.is_null())
    {
        params.insert("max_tokens".into(), cap);
    }
}

/// Checks `messages` and the answer-shaping `params` of a chat for a model that `answers`
/// so.
pub fn check(
    messages: &[Value],
    params: &Map<String, Value>,
    answers: Answers,
) -> Result<(), InvalidParam> {
    let invalid = |param: &str, message: String| InvalidParam {
        param: Some(param.into()),
        message,
        ..Default::default()
    };
    if messages.is_empty() {
        return Err(invalid("messages", "messages must not be empty".into()));
    }
    for (i, message) in messages.iter().enumerate() {
        let Some(message) = message.as_object() else {
            return Err(invalid(
                "messages",
                format!("messages[{i}] must be an object with a role and content"),
            ));
        };
        let role = message.get("role").and_then(Value::as_str);
        let Some(role) = role.filter(|r| ROLES.contains(r)) else {
            return Err(invalid(
                "messages",
                format!(
                    "messages[{i}].role must be one of {}; got {}",
                    ROLES.join(", "),
                    message.get("role").unwrap_or(&Value::Null)
                ),
            ));
        };
        let may_omit = role == "assistant" && message.contains_key("tool_calls");
        let content_ok = match message.get("content") {
            Some(Value::String(_)) => true,
            Some(Value::Array(parts)) => parts
                .iter()
                .all(|part| part.get("type").is_some_and(Value::is_string)),
            None | Some(Value::Null) => may_omit,
            Some(_) => false,
        };
        if !content_ok {
            return Err(invalid(
                "messages",
                format!(
                    "messages[{i}].content must be a string or a list of content parts \
                     (objects with a type)"
                ),
            ));
        }
        if role == "tool" && !message.get("tool_call_id").is_some_and(Value::is_string) {
            return Err(invalid(
                "messages",
                format!("messages[{i}] is a tool message without the tool_call_id it answers"),
            ));
        }
    }
    let set = |name: &str| params.get(name).filter(|v| !v.is_null());
    if let Some(name) = LEGACY_FUNCTION_PARAMS
        .iter()
        .find(|name| set(name).is_some())
    {
        return Err(invalid(
            name,
            format!("{name} is not supported: OpenAI deprecated it; use tools and tool_choice"),
        ));
    }
    if !answers.tool_calls
        && let Some(name) = TOOL_PARAMS.iter().find(|name| set(name).is_some())
    {
        return Err(invalid(
            name,
            format!("{name} is not supported: this model does not make tool calls"),
        ));
    }
    // As OpenAI answers them: a choice among no tools is a mistake, not a no-op.
    if set("tools").is_none()
        && let Some(name) = TOOL_PARAMS[1..].iter().find(|name| set(name).is_some())
    {
        return Err(invalid(name, format!("{name} is only allowed with tools")));
    }
    // A format the plugin would drop is refused: text asked for as JSON is not JSON.
    if !answers.formats && set("response_format").is_some_and(|format| format["type"] != "text") {
        return Err(invalid(
            "response_format",
            "response_format is not supported: this model answers text only".into(),
        ));
    }
    if let Some(n) = set("n")
        && n.as_u64() != Some(1)
    {
        return Err(invalid(
            "n",
            "n must be 1: this gateway answers one choice per chat".into(),
        ));
    }
    for name in ["logprobs", "top_logprobs"] {
        if set(name).is_some_and(|v| v != &Value::Bool(false)) {
            return Err(invalid(
                name,
                format!("{name} is not supported: this gateway relays text answers only"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checked(messages: Value, params: Value) -> Result<(), String> {
        let messages = messages.as_array().unwrap().clone();
        let params = params.as_object().unwrap().clone();
        check(&messages, &params, Answers::default())
            .map_err(|e| format!("{}: {}", e.param.unwrap(), e.message))
    }

    #[test]
    fn conversations_need_roles_and_content() {
        let hi = json!([{"role": "system", "content": "be brief"},
                        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                        {"role": "assistant", "content": null, "tool_calls": []},
                        {"role": "tool", "content": "42", "tool_call_id": "t"}]);
        assert_eq!(checked(hi, json!({"n": 1, "logprobs": false})), Ok(()));
        for (messages, says) in [
            (json!([]), "messages must not be empty"),
            (json!(["hi"]), "messages[0] must be an object"),
            (
                json!([{"role": "user"}]),
                "messages[0].content must be a string",
            ),
            (
                json!([{"role": "wizard", "content": "x"}]),
                "got \"wizard\"",
            ),
            (json!([{"content": "x"}]), "got null"),
            (
                json!([{"role": "user", "content": "a"}, {"role": "user", "content": 5}]),
                "messages[1].content",
            ),
            (
                json!([{"role": "user", "content": [{"text": "untyped"}]}]),
                "content parts",
            ),
            (
                json!([{"role": "tool", "content": "42"}]),
                "messages[0] is a tool message without the tool_call_id",
            ),
        ] {
            let error = checked(messages, json!({})).unwrap_err();
            assert!(
                error.starts_with("messages: ") && error.contains(says),
                "{error}"
            );
        }
    }

    #[test]
    fn answers_the_relay_cannot_carry_are_refused_by_name() {
        let hi = json!([{"role": "user", "content": "hi"}]);
        for (params, param) in [
            (json!({"tools": [{"type": "function"}]}), "tools"),
            (json!({"tool_choice": "auto"}), "tool_choice"),
            (json!({"parallel_tool_calls": false}), "parallel_tool_calls"),
            (json!({"functions": []}), "functions"),
            (json!({"function_call": "auto"}), "function_call"),
            (json!({"n": 3}), "n"),
            (json!({"logprobs": true}), "logprobs"),
            (json!({"top_logprobs": 2}), "top_logprobs"),
        ] {
            let error = checked(hi.clone(), params).unwrap_err();
            assert!(error.starts_with(&format!("{param}: ")), "{error}");
        }
    }

    #[test]
    fn a_model_that_declares_tools_is_asked_for_tool_calls() {
        let hi = json!([{"role": "user", "content": "hi"}]);
        let tools = json!({"tools": [{"type": "function", "function": {"name": "f"}}],
                           "tool_choice": "auto", "parallel_tool_calls": false});
        let params = tools.as_object().unwrap();
        let tooled = Answers::of(&json!({"properties": {"tools": {"type": "array"}}}), true);
        assert!(check(hi.as_array().unwrap(), params, tooled).is_ok());
        // Declared, but by a plugin whose contract has no tool calls: refused.
        let old = Answers::of(&json!({"properties": {"tools": {}}}), false);
        assert!(check(hi.as_array().unwrap(), params, old).is_err());
        for alone in [
            json!({"tool_choice": "auto"}),
            json!({"parallel_tool_calls": true}),
        ] {
            let error =
                check(hi.as_array().unwrap(), alone.as_object().unwrap(), tooled).unwrap_err();
            let name = alone.as_object().unwrap().keys().next().unwrap().clone();
            assert_eq!(error.param, Some(name));
            assert!(
                error.message.ends_with("is only allowed with tools"),
                "{}",
                error.message
            );
        }
        let legacy = json!({"functions": [{"name": "f"}]});
        let error = check(hi.as_array().unwrap(), legacy.as_object().unwrap(), tooled).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("functions"));
    }

    #[test]
    fn an_answer_format_needs_a_model_that_declares_it() {
        let hi = json!([{"role": "user", "content": "hi"}]);
        let json_mode = json!({"response_format": {"type": "json_object"}});
        let json_mode = json_mode.as_object().unwrap();
        let error = check(hi.as_array().unwrap(), json_mode, Answers::default()).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("response_format"));
        let formats = Answers::of(&json!({"properties": {"response_format": {}}}), false);
        assert!(check(hi.as_array().unwrap(), json_mode, formats).is_ok());
        // Plain text is what every model answers, and null asks for nothing.
        for plain in [
            json!({"response_format": {"type": "text"}}),
            json!({"response_format": null}),
        ] {
            let plain = plain.as_object().unwrap();
            assert!(check(hi.as_array().unwrap(), plain, Answers::default()).is_ok());
        }
    }

    #[test]
    fn the_token_cap_takes_the_name_the_model_declares() {
        let old_name = json!({"properties": {"max_tokens": {"type": "integer"}}});
        let both = json!({"properties": {"max_tokens": {}, "max_completion_tokens": {}}});
        let named = |schema: &Value, params: Value| {
            let mut params = params.as_object().unwrap().clone();
            name_the_token_cap(&mut params, schema);
            Value::Object(params)
        };
        assert_eq!(
            named(&old_name, json!({"max_completion_tokens": 5})),
            json!({"max_tokens": 5})
        );
        assert_eq!(
            named(
                &old_name,
                json!({"max_tokens": 9, "max_completion_tokens": 5})
            ),
            json!({"max_tokens": 5})
        );
        assert_eq!(
            named(&old_name, json!({"max_tokens": 9})),
            json!({"max_tokens": 9})
        );
        assert_eq!(
            named(&both, json!({"max_completion_tokens": 5})),
            json!({"max_completion_tokens": 5})
        );
        assert_eq!(
            named(&json!({}), json!({"max_completion_tokens": 5})),
            json!({"max_completion_tokens": 5})
        );
    }
}
