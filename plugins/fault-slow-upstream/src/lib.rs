//! Fault plugin `fault-slow-upstream`: fetches the URL in the `url` parameter (a local
//! test server that is slow, or answers too much) and returns what it read. Allowed hosts
//! are `127.0.0.1` and `localhost` only. The host's timeouts and response-size cap must
//! end the call with a clear upstream error.
//!
//! Parameters: `url` (required), `timeout_ms` (optional: the plugin's own first-byte and
//! between-bytes timeout; without it only the host's limits apply), `stream` (bool: read
//! the body chunk by chunk and report how many bytes arrived), `body` (a string: POST it
//! instead of a GET, `repeat` times over, to exercise request bodies).

use easel_sdk::http::Request;
use easel_sdk::serde_json::json;
use easel_sdk::{Error, Finished, GenerationRequest, Manifest, Model, Output, Provider, Result, Submission};
use std::time::Duration;

/// The provider.
#[derive(Default)]
pub struct FaultSlowUpstream;

easel_sdk::export!(FaultSlowUpstream);

impl Provider for FaultSlowUpstream {
    fn manifest(&self) -> Manifest {
        Manifest::new("fault-slow-upstream", env!("CARGO_PKG_VERSION"))
            .allow_host("127.0.0.1")
            .allow_host("localhost")
            .model(
                Model::new("fetch", "Fetches a local URL", "image").capability("image.generate").params_schema(json!({
                    "type": "object",
                    "properties": {
                        "url": {"type": "string"},
                        "timeout_ms": {"type": "integer", "minimum": 1},
                        "stream": {"type": "boolean", "default": false},
                        "body": {"type": "string"},
                        "repeat": {"type": "integer", "minimum": 1, "maximum": 1000000, "default": 1}
                    },
                    "required": ["url"]
                })),
            )
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        let url = request
            .param_value("url")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::invalid("`url` is required"))?
            .to_string();
        let mut req = match request.param_value("body") {
            Some(_) => {
                let body = request.param_str("body", "")?.repeat(request.param_u64("repeat", 1)? as usize);
                Request::post(&url).header("content-type", "text/plain").body(body)
            }
            None => Request::get(&url),
        };
        if request.param_value("timeout_ms").is_some() {
            let t = Duration::from_millis(request.param_u64("timeout_ms", 0)?);
            req = req.first_byte_timeout(t).between_bytes_timeout(t);
        }
        if request.param_bool("stream", false)? {
            let mut response = req.send_streaming()?.error_for_status()?;
            let mut total = 0usize;
            while let Some(chunk) = response.read_chunk()? {
                total += chunk.len();
            }
            return Ok(Submission::Finished(
                Finished::new(vec![Output::bytes("text/plain", format!("read {total} bytes").into_bytes())])
                    .usage(json!({"bytes": total})),
            ));
        }
        let response = req.send()?.error_for_status()?;
        let content_type = response.header("content-type").unwrap_or("application/octet-stream").to_string();
        Ok(Submission::finished(vec![Output::bytes(content_type, response.into_body())]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use easel_sdk::testing::{Expect, Reply, Script};

    #[test]
    fn fetches_the_url_with_the_asked_timeout() {
        let g = Script::new()
            .exchange(Expect::get("http://127.0.0.1:9/slow"), Reply::text(200, "late"))
            .exchange(Expect::get("http://127.0.0.1:9/big"), Reply::status(200).chunk(vec![1; 10]).chunk(vec![2; 5]))
            .exchange(Expect::get("http://127.0.0.1:9/dead"), Reply::fail(Error::upstream("timed out")))
            .install();
        let r = FaultSlowUpstream
            .submit(GenerationRequest::new("image.generate", "fetch", "").param("url", "http://127.0.0.1:9/slow").param("timeout_ms", 50))
            .unwrap();
        assert_eq!(r, Submission::finished(vec![Output::bytes("text/plain", b"late".to_vec())]));
        assert_eq!(g.requests()[0].timeouts().1, Some(Duration::from_millis(50)));
        let Submission::Finished(f) = FaultSlowUpstream
            .submit(GenerationRequest::new("image.generate", "fetch", "").param("url", "http://127.0.0.1:9/big").param("stream", true))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(f.outputs, vec![Output::bytes("text/plain", b"read 15 bytes".to_vec())]);
        let e = FaultSlowUpstream
            .submit(GenerationRequest::new("image.generate", "fetch", "").param("url", "http://127.0.0.1:9/dead"))
            .unwrap_err();
        assert_eq!(e, Error::upstream("timed out"));
        assert!(FaultSlowUpstream.submit(GenerationRequest::new("image.generate", "fetch", "")).is_err());
        g.finish();

        let g = Script::new()
            .exchange(Expect::post("http://localhost:9/echo").body("abab").header("content-type", "text/plain"), Reply::text(200, "4"))
            .install();
        let r = FaultSlowUpstream.submit(
            GenerationRequest::new("image.generate", "fetch", "")
                .param("url", "http://localhost:9/echo")
                .param("body", "ab")
                .param("repeat", 2),
        );
        assert_eq!(r.unwrap(), Submission::finished(vec![Output::bytes("text/plain", b"4".to_vec())]));
        g.finish();
    }
}
