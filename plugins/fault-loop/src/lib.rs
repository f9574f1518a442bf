//! Fault plugin `fault-loop`: `submit` never returns. The host's epoch deadline must end
//! the call, fail that task, and leave everything else alone.

use easel_sdk::{GenerationRequest, Manifest, Model, Provider, Result, Submission};

/// The provider.
#[derive(Default)]
pub struct FaultLoop;

easel_sdk::export!(FaultLoop);

impl Provider for FaultLoop {
    fn manifest(&self) -> Manifest {
        Manifest::new("fault-loop", env!("CARGO_PKG_VERSION"))
            .model(Model::new("image", "Spins forever", "image").capability("image.generate"))
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        let mut x = request.prompt.len() as u64;
        loop {
            // Opaque to the optimizer, so the loop cannot be removed.
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}
