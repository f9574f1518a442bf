//! Fault plugin `fault-alloc`: `submit` allocates and touches memory without bound. The
//! host's memory limit must stop it (a trap or an allocation failure), fail that task,
//! and leave everything else alone.

use easel_sdk::{GenerationRequest, Manifest, Model, Provider, Result, Submission};

/// The provider.
#[derive(Default)]
pub struct FaultAlloc;

easel_sdk::export!(FaultAlloc);

impl Provider for FaultAlloc {
    fn manifest(&self) -> Manifest {
        Manifest::new("fault-alloc", env!("CARGO_PKG_VERSION"))
            .model(Model::new("image", "Eats memory", "image").capability("image.generate"))
    }

    fn submit(&self, _request: GenerationRequest) -> Result<Submission> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // 16 MiB at a time, every page written so nothing stays lazily unmapped.
            let mut block = vec![0u8; 16 << 20];
            for page in block.chunks_mut(4096) {
                page[0] = hoard.len() as u8 | 1;
            }
            hoard.push(std::hint::black_box(block));
        }
    }
}
