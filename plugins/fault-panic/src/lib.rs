//! Fault plugin `fault-panic`: `submit` panics (a trap in the component). The host must
//! fail that task and keep serving with a fresh instance.

use easel_sdk::{GenerationRequest, Manifest, Model, Provider, Result, Submission};

/// The provider.
#[derive(Default)]
pub struct FaultPanic;

easel_sdk::export!(FaultPanic);

impl Provider for FaultPanic {
    fn manifest(&self) -> Manifest {
        Manifest::new("fault-panic", env!("CARGO_PKG_VERSION"))
            .model(Model::new("image", "Panics", "image").capability("image.generate"))
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        panic!("fault-panic: deliberate panic on prompt {:?}", request.prompt);
    }
}
