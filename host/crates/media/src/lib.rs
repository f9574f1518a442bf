//! Media files made from nothing but numbers, for easel's offline provider and the demo
//! plugin: H.264 video in MP4 ([`mp4`]) that browsers play inline, WAV audio
//! ([`wav_mono16`]), and the hash both seed their pictures and tones with ([`fnv1a`]).
//!
//! Invariants: no dependencies and no I/O, so the same code builds into the host and into a
//! WebAssembly plugin; the same input always makes the same bytes.

#![deny(missing_docs)]

mod h264;
mod mp4;
mod wav;

pub use mp4::mp4;
pub use wav::wav_mono16;

/// FNV-1a, 64 bits: a stable seed from a prompt (the same in every build and on every host).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}
