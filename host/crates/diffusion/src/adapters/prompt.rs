//! A1111's prompt syntax for adapters: `<lora:name>` or `<lora:name:weight>` anywhere in
//! the prompt (`<lyco:…>` too), taken out before the prompt is tokenized.
//!
//! Invariants: the weight defaults to 1.0; a tag whose weight is not a number, or that gives
//! more than one (A1111's separate text-encoder and UNet weights, `<lora:name:0.5:0.3>`), or
//! no name (`<lora::1>`), or that is written otherwise than A1111 reads it (`<LORA:…>`,
//! `< lora:…>`), is refused rather than read as text; whitespace left where a tag was is
//! collapsed (a prompt without tags comes back as it was).

use std::sync::LazyLock;

use regex::Regex;

static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<(?:lora|lyco):([^:<>]+)(?::([^<>]*))?>").expect("valid"));

/// What starts as a tag, in any case and spacing: left in a prompt once its tags are out, it
/// is one A1111 would not read, which would otherwise run as words, unseen.
static TAG_LIKE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)<\s*(?:lora|lyco)\s*:").expect("valid"));

/// The prompt without its adapter tags, and each tag's `(name, weight)` in order.
pub fn extract(prompt: &str) -> Result<(String, Vec<(String, f64)>), String> {
    let mut tags = Vec::new();
    for found in TAG.captures_iter(prompt) {
        let name = found[1].trim().to_string();
        if name.is_empty() {
            return Err(format!("{}: the adapter has no name", &found[0]));
        }
        let weight = match found.get(2).map(|w| w.as_str().trim()) {
            None | Some("") => 1.0,
            Some(text) if text.contains(':') => {
                return Err(format!(
                    "<lora:{name}:{text}>: give one weight; separate text-encoder and UNet \
                     weights are not supported"
                ));
            }
            Some(text) => text
                .parse::<f64>()
                .ok()
                .filter(|w| w.is_finite())
                .ok_or_else(|| format!("<lora:{name}:{text}>: the weight must be a number"))?,
        };
        tags.push((name, weight));
    }
    let stripped = TAG.replace_all(prompt, " ");
    // What starts as a tag and is none (`<lora:>`, `<lora::1>`, `<LORA:ink>`) would run as
    // words, unseen.
    if let Some(found) = TAG_LIKE.find(&stripped) {
        let rest = &stripped[found.start()..];
        let shown = rest.find('>').map_or(rest, |end| &rest[..=end]);
        return Err(format!(
            "{shown}: not an adapter tag; write <lora:name> or <lora:name:weight> (lower case, \
             no space after <)"
        ));
    }
    if tags.is_empty() {
        return Ok((prompt.to_string(), tags));
    }
    let cleaned = stripped.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok((cleaned, tags))
}

#[cfg(test)]
mod tests {
    use super::extract;

    #[test]
    fn tags_without_a_name_are_refused_not_left_as_words() {
        for prompt in [
            "a fox <lora::1>",
            "a fox <lora:>",
            "a fox <lora: :0.5>",
            "<lyco:>",
        ] {
            let refused = extract(prompt).unwrap_err();
            assert!(
                refused.contains("no name") || refused.contains("not an adapter tag"),
                "{prompt}: {refused}"
            );
        }
        // A1111 reads only the lower-case tag: one written otherwise is refused, not run as
        // words while the client believes its adapter applied.
        for prompt in [
            "a fox <LORA:ink:0.5>",
            "a fox <Lora:ink>",
            "a fox < lora:ink:0.5 >",
        ] {
            let refused = extract(prompt).unwrap_err();
            assert!(refused.contains("lower case"), "{prompt}: {refused}");
        }
    }

    #[test]
    fn tags_leave_the_prompt_with_their_weights() {
        let (prompt, tags) =
            extract("a cat <lora:ink:0.6>, watercolor <lora:paper> <lyco:grain:-0.5>").unwrap();
        assert_eq!(prompt, "a cat , watercolor");
        assert_eq!(
            tags,
            vec![
                ("ink".to_string(), 0.6),
                ("paper".to_string(), 1.0),
                ("grain".to_string(), -0.5)
            ]
        );
        assert!(extract("<lora:ink:strong>").is_err());
        assert!(extract("x <lora:ink:0.5:0.3>").is_err());
        assert!(extract("x <lora:ink:te=0.5:unet=0.3>").is_err());
        assert_eq!(extract("plain").unwrap(), ("plain".to_string(), vec![]));
    }
}
