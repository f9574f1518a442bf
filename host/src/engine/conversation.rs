//! What a chat's conversation must be, checked at the front door for every dialect.
//!
//! Invariants:
//! - Every message is an object with a `role` OpenAI defines (`system`, `developer`, `user`,
//!   `assistant`, `tool`) and a `content` that is a string or a non-empty list of parts, each
//!   of a type some vendor takes ([`PART_TYPES`]) and holding the field its type names (a
//!   `text` string, an `image_url` object with a `url`, …); only an assistant message that
//!   records tool calls may go without content, its calls each `{id, type: "function",
//!   function: {name, arguments}}` with the arguments as text, a `tool` message names the call
//!   it answers (`tool_call_id`), and a `name` is a string.
//! - The files a conversation links or holds whole (image and video parts) are the chat's
//!   input files ([`linked_files`]): the front door checks them as every request's inputs
//!   are ([`inputs::check`](crate::engine::inputs::check): the no-SSRF rule, `data:` URLs that
//!   decode, images that are images).
//! - Parameters that would ask for an answer the relay cannot carry are refused, never
//!   dropped: the relay answers one choice of text and tool calls, so `n` above 1, log
//!   probabilities, the legacy `functions`, `tools` for a model that does not make tool calls
//!   (its schema does not declare them, or its plugin's contract has none), a tool choice
//!   without tools or naming a function they do not define, and a `response_format` other
//!   than text for a model whose schema does not declare one (its plugin would drop it) are a
//!   400 naming the parameter, not a 200 that quietly lacks them.
//! - The token cap reaches the model under the name its schema declares: OpenAI's current
//!   `max_completion_tokens` becomes `max_tokens` for a model that takes only that.

use serde_json::{Map, Value};

use crate::engine::{
    inputs::{Input, Source},
    provider::schema::InvalidParam,
};

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// The content part types a message may hold: OpenAI's, and the video parts of the vendors
/// that read videos (DashScope's `video` frames, `video_url`).
pub const PART_TYPES: [&str; 7] = [
    "text",
    "image_url",
    "input_audio",
    "file",
    "refusal",
    "video_url",
    "video",
];

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
        // An assistant's answer that was only tool calls or a refusal has no text.
        let may_omit = role == "assistant"
            && (message.contains_key("tool_calls")
                || message.get("refusal").is_some_and(Value::is_string));
        let content_ok = match message.get("content") {
            Some(Value::String(_)) => true,
            Some(Value::Array(parts)) if !parts.is_empty() => {
                for (j, part) in parts.iter().enumerate() {
                    check_part(part).map_err(|why| {
                        let at = format!("messages[{i}].content[{j}]");
                        invalid(&at, format!("{at} {why}"))
                    })?;
                }
                true
            }
            None | Some(Value::Null) => may_omit,
            Some(_) => false,
        };
        if !content_ok {
            return Err(invalid(
                "messages",
                format!(
                    "messages[{i}].content must be a string or a non-empty list of content \
                     parts (objects with a type)"
                ),
            ));
        }
        if role == "tool" && !message.get("tool_call_id").is_some_and(Value::is_string) {
            return Err(invalid(
                "messages",
                format!("messages[{i}] is a tool message without the tool_call_id it answers"),
            ));
        }
        if message.get("name").is_some_and(|name| !name.is_string()) {
            let at = format!("messages[{i}].name");
            return Err(invalid(&at, format!("{at} must be a string")));
        }
        if let Some(calls) = message.get("tool_calls").filter(|calls| !calls.is_null()) {
            let calls = calls.as_array().ok_or_else(|| {
                let at = format!("messages[{i}].tool_calls");
                invalid(&at, format!("{at} must be a list"))
            })?;
            if let Some(k) = calls.iter().position(|call| !is_tool_call(call)) {
                return Err(invalid(
                    &format!("messages[{i}].tool_calls[{k}]"),
                    format!(
                        "messages[{i}].tool_calls[{k}] must be {{\"id\", \"type\": \"function\", \
                         \"function\": {{\"name\", \"arguments\"}}}} with the arguments as a \
                         JSON string"
                    ),
                ));
            }
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
    if let Some(chosen) = set("tool_choice")
        .and_then(|choice| choice.pointer("/function/name"))
        .and_then(Value::as_str)
    {
        let tools = set("tools").and_then(Value::as_array);
        let defined = tools
            .into_iter()
            .flatten()
            .any(|tool| tool.pointer("/function/name").and_then(Value::as_str) == Some(chosen));
        if !defined {
            return Err(invalid(
                "tool_choice",
                format!("tool_choice names function {chosen}, which tools does not define"),
            ));
        }
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

/// Why a content `part` is not one some vendor takes, if it is not.
fn check_part(part: &Value) -> Result<(), String> {
    let Some(kind) = part.get("type").and_then(Value::as_str) else {
        return Err("must be an object with a type".into());
    };
    let field = part.get(kind);
    let (holds, what) = match kind {
        "text" | "refusal" => (field.is_some_and(Value::is_string), "string"),
        "image_url" | "video_url" => (
            field.is_some_and(|link| link.get("url").is_some_and(Value::is_string)),
            "object with a url",
        ),
        "input_audio" => (
            field.is_some_and(|audio| {
                audio.get("data").is_some_and(Value::is_string)
                    && audio.get("format").is_some_and(Value::is_string)
            }),
            "object with data and format",
        ),
        "file" => (field.is_some_and(Value::is_object), "object"),
        "video" => (
            field
                .and_then(Value::as_array)
                .is_some_and(|frames| !frames.is_empty() && frames.iter().all(Value::is_string)),
            "list of frame URLs",
        ),
        other => {
            return Err(format!(
                "has type {other}, which is none of {}",
                PART_TYPES.join(", ")
            ));
        }
    };
    if holds {
        Ok(())
    } else {
        Err(format!("is of type {kind} but has no {kind} {what}"))
    }
}

/// Whether `call` is an assistant's tool call as OpenAI records it.
fn is_tool_call(call: &Value) -> bool {
    let text = |pointer: &str| call.pointer(pointer).is_some_and(Value::is_string);
    text("/id")
        && call.get("type").is_none_or(|kind| kind == "function")
        && text("/function/name")
        && text("/function/arguments")
}

/// The files a checked conversation links or holds whole: each image and video part's URL as
/// an input of its kind, named by where it is (`messages[0].content[1].image_url`).
pub fn linked_files(messages: &[Value]) -> Vec<Input> {
    let mut files = Vec::new();
    let mut link = |field: String, kind: &str, url: &Value| {
        if let Some(url) = url.as_str() {
            files.push(Input {
                field,
                kind: Some(kind.into()),
                role: None,
                source: Source::Url(url.to_string()),
            });
        }
    };
    for (i, message) in messages.iter().enumerate() {
        let Some(Value::Array(parts)) = message.get("content") else {
            continue;
        };
        // Named only when linked: a text part costs no name.
        for (j, part) in parts.iter().enumerate() {
            let at = || format!("messages[{i}].content[{j}]");
            match part.get("type").and_then(Value::as_str) {
                Some(kind @ ("image_url" | "video_url")) => {
                    let media = if kind == "image_url" {
                        "image"
                    } else {
                        "video"
                    };
                    link(format!("{}.{kind}", at()), media, &part[kind]["url"]);
                }
                Some("video") => {
                    let frames = part["video"].as_array().into_iter().flatten();
                    for (k, frame) in frames.enumerate() {
                        link(format!("{}.video[{k}]", at()), "image", frame);
                    }
                }
                _ => {}
            }
        }
    }
    files
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
        let user = |parts: Value| json!([{"role": "user", "content": parts}]);
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
                "messages[0].content[0] must be an object with a type",
            ),
            (
                json!([{"role": "tool", "content": "42"}]),
                "messages[0] is a tool message without the tool_call_id",
            ),
            (
                user(json!([])),
                "messages[0].content must be a string or a non-empty list",
            ),
            (
                user(json!([{"type": "zzz"}])),
                "messages[0].content[0] has type zzz, which is none of",
            ),
            (
                user(json!([{"type": "text"}])),
                "messages[0].content[0] is of type text but has no text string",
            ),
            (
                user(json!([{"type": "text", "text": 5}])),
                "but has no text string",
            ),
            (
                user(json!([{"type": "image_url", "image_url": "https://x.test/a.png"}])),
                "is of type image_url but has no image_url object with a url",
            ),
            (
                user(json!([{"type": "image_url", "image_url": {}}])),
                "has no image_url object with a url",
            ),
            (
                json!([{"role": "user", "content": "hi", "name": 5}]),
                "messages[0].name must be a string",
            ),
            (
                json!([{"role": "assistant", "content": null, "tool_calls": "x"}]),
                "messages[0].tool_calls must be a list",
            ),
            (
                json!([{"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": 5}}]}]),
                "messages[0].tool_calls[0] must be",
            ),
        ] {
            // Named by the message, or the part of it, at fault.
            let error = checked(messages, json!({})).unwrap_err();
            assert!(
                error.starts_with("messages") && error.contains(says),
                "{error}"
            );
        }
    }

    #[test]
    fn parts_calls_and_names_hold_what_their_type_says() {
        let user = |parts: Value| json!([{"role": "user", "content": parts}]);
        let image = json!({"type": "image_url", "image_url": {"url": "https://x.test/a.png"}});
        let fine = user(json!([{"type": "text", "text": "what is this?"}, image,
                               {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                               {"type": "video", "video": ["https://x.test/1.jpg"]}]));
        assert_eq!(checked(fine, json!({})), Ok(()));
        let call = json!({"id": "c1", "type": "function",
                          "function": {"name": "f", "arguments": "{}"}});
        let answered = json!([{"role": "user", "content": "hi", "name": "ann"},
                              {"role": "assistant", "content": null, "tool_calls": [call]},
                              {"role": "tool", "content": "42", "tool_call_id": "c1"}]);
        assert_eq!(checked(answered, json!({})), Ok(()));
        // A refusal replayed as the SDKs hand it back: no content beside it.
        let refused = json!([{"role": "user", "content": "hi"},
                             {"role": "assistant", "content": null, "refusal": "I can't."},
                             {"role": "user", "content": "why?"}]);
        assert_eq!(checked(refused, json!({})), Ok(()));
        let error = checked(
            json!([{"role": "user", "content": [{"type": "text", "text": 5}]}]),
            json!({}),
        )
        .unwrap_err();
        assert!(error.starts_with("messages[0].content[0]: "), "{error}");
    }

    #[test]
    fn a_tool_choice_names_a_function_the_tools_define() {
        let hi = json!([{"role": "user", "content": "hi"}]);
        let tooled = Answers::of(&json!({"properties": {"tools": {}}}), true);
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let choose = |name: &str| json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": name}}});
        let check_with =
            |params: Value| check(hi.as_array().unwrap(), params.as_object().unwrap(), tooled);
        assert!(check_with(choose("f")).is_ok());
        let error = check_with(choose("g")).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("tool_choice"));
        assert_eq!(
            error.message,
            "tool_choice names function g, which tools does not define"
        );
    }

    #[test]
    fn linked_files_are_the_image_and_video_parts_by_where_they_are() {
        let messages = json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "compare"},
                {"type": "image_url", "image_url": {"url": "http://169.254.169.254/x"}},
                {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}},
                {"type": "video", "video": ["https://x.test/1.jpg", "https://x.test/2.jpg"]}
            ]}
        ]);
        let files = linked_files(messages.as_array().unwrap());
        let seen: Vec<(&str, &str, &str)> = files
            .iter()
            .map(|file| {
                let Source::Url(url) = &file.source else {
                    panic!("a link: {file:?}")
                };
                (
                    file.field.as_str(),
                    file.kind.as_deref().unwrap(),
                    url.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "messages[1].content[1].image_url",
                    "image",
                    "http://169.254.169.254/x"
                ),
                (
                    "messages[1].content[2].video_url",
                    "video",
                    "data:video/mp4;base64,AAAA"
                ),
                (
                    "messages[1].content[3].video[0]",
                    "image",
                    "https://x.test/1.jpg"
                ),
                (
                    "messages[1].content[3].video[1]",
                    "image",
                    "https://x.test/2.jpg"
                ),
            ]
        );
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
