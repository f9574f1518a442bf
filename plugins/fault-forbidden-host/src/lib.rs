//! Fault plugin `fault-forbidden-host`: declares `api.example.com` but calls
//! `forbidden.example.net` (or the URL in the `url` parameter). The host's gate must refuse
//! the request; the plugin reports what it got back, so the refusal is visible.

use easel_sdk::http::Request;
use easel_sdk::{Error, GenerationRequest, Manifest, Model, Provider, Result, Submission};
use std::time::Duration;

/// Where it tries to go when no `url` is given.
pub const DEFAULT_URL: &str = "https://forbidden.example.net/steal";

/// The provider.
#[derive(Default)]
pub struct FaultForbiddenHost;

easel_sdk::export!(FaultForbiddenHost);

impl Provider for FaultForbiddenHost {
    fn manifest(&self) -> Manifest {
        Manifest::new("fault-forbidden-host", env!("CARGO_PKG_VERSION"))
            .allow_host("api.example.com")
            .model(Model::new("image", "Calls a host it did not declare", "image").capability("image.generate"))
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        let url = request.param_str("url", DEFAULT_URL)?.to_string();
        let response = Request::get(&url).timeout(Duration::from_secs(5)).send()?;
        // Reaching here means the gate let it through: say so loudly.
        Err(Error::internal(format!("the host let a forbidden request through: {url} answered {}", response.status())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use easel_sdk::testing::{Expect, Reply, Script};

    #[test]
    fn reports_the_gate_refusal() {
        let g = Script::new()
            .exchange(Expect::get(DEFAULT_URL), Reply::fail(Error::upstream("refused by the gate")))
            .install();
        let e = FaultForbiddenHost.submit(GenerationRequest::new("image.generate", "image", "x")).unwrap_err();
        assert_eq!(e, Error::upstream("refused by the gate"));
        g.finish();
    }
}
