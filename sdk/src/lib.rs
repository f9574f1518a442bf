//! # easel-sdk
//!
//! Write an easel provider plugin — a WebAssembly component implementing the
//! `easel:provider@0.5.0` contract — as plain Rust, and test it offline.
//!
//! 1. Implement [`Provider`] on a type with [`Default`]: only [`Provider::manifest`] and
//!    [`Provider::submit`] are required; `poll`, `cancel` and `chat` answer with clear
//!    errors until you override them.
//! 2. Export it once with [`export!`]: `easel_sdk::export!(MyProvider);`.
//! 3. Call vendors with [`http::Request`]; read credentials with [`secret`]; write to the
//!    host's log with [`log`].
//! 4. Test natively with `testing::Script` (off wasm32 only): the trait methods are
//!    ordinary functions and every HTTP request is checked against the script, offline.
//! 5. Build with `cargo build --release --target wasm32-wasip2` and drop the `.wasm` into
//!    the host's `EASEL_PLUGINS_DIR`.
//!
//! ```
//! use easel_sdk::{Error, GenerationRequest, Manifest, Model, Output, Provider, Result, Submission};
//!
//! #[derive(Default)]
//! struct Echo;
//!
//! impl Provider for Echo {
//!     fn manifest(&self) -> Manifest {
//!         Manifest::new("echo", "0.1.0")
//!             .model(Model::new("text", "Echo", "image").capability("image.generate"))
//!     }
//!
//!     fn submit(&self, request: GenerationRequest) -> Result<Submission> {
//!         if request.prompt.is_empty() {
//!             return Err(Error::invalid("prompt is empty"));
//!         }
//!         Ok(Submission::finished(vec![Output::Text(request.prompt)]))
//!     }
//! }
//!
//! easel_sdk::export!(Echo);
//! ```
//!
//! Everything that touches the component model is compiled only for
//! `target_arch = "wasm32"`; native builds see plain Rust types.
#![deny(missing_docs)]

mod error;
mod host;
pub mod http;
mod types;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wasm;

pub use error::{Error, Fault, Result};
pub use host::{Level, log, require_secret, secret};
pub use types::{
    ChatEvent, ChatRequest, ChatStream, EventList, Finished, FnStream, GenerationRequest, InputMedia, Manifest, Model,
    Output, PollOutcome, Pending, Submission, collect_chat,
};

/// Re-exported so plugins need not depend on `serde_json` themselves.
pub use serde_json;

/// The version of the WIT contract this SDK implements.
pub const CONTRACT_VERSION: &str = "easel:provider@0.5.0";

/// A provider adapter. Implement it on a type with [`Default`] and export it with
/// [`export!`]. One value is made per component instance, on first use, and every call
/// borrows it; keep per-task state in pending handles, not in the value, since a poll may
/// reach a fresh instance after a restart.
pub trait Provider: 'static {
    /// Who the plugin is and what it serves; called once per load.
    fn manifest(&self) -> Manifest;

    /// Starts or does the work. Return [`Submission::Finished`] when done, or
    /// [`Submission::Pending`] with a handle that carries everything `poll` needs.
    fn submit(&self, request: GenerationRequest) -> Result<Submission>;

    /// Asks about a pending handle. The default fails, saying what to implement: a provider
    /// that never returns `Pending` is never polled.
    fn poll(&self, handle: &str) -> Result<PollOutcome> {
        let _ = handle;
        Err(Error::internal(
            "the plugin returned a pending handle but does not implement Provider::poll",
        ))
    }

    /// Cancels a pending handle upstream, best effort. The default fails: the vendor has
    /// no way to cancel.
    fn cancel(&self, handle: &str) -> Result<()> {
        let _ = handle;
        Err(Error::internal("this provider cannot cancel a task upstream"))
    }

    /// Starts a chat answer. The default fails, saying what to implement: the host asks only
    /// for a model whose manifest declares the `chat` capability.
    fn chat(&self, request: ChatRequest) -> Result<Box<dyn ChatStream>> {
        Err(Error::internal(format!(
            "the plugin declares chat for model `{}` but does not implement Provider::chat",
            request.model
        )))
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __forward_exports {
    ($($legacy:literal as $name:literal, $post:literal : fn($($arg:ident),*) -> i32;)*) => {
        $(
            const _: () = {
                // The generated export and its post-return, under the prefixed legacy names.
                unsafe extern "C" {
                    #[link_name = concat!("__easel_sdk_", $legacy)]
                    fn generated($($arg: i32),*) -> i32;
                    #[link_name = concat!("__easel_sdk_cabi_post_", $legacy)]
                    fn generated_post(ret: i32);
                }
                #[unsafe(export_name = $name)]
                unsafe extern "C" fn forward($($arg: i32),*) -> i32 {
                    unsafe { generated($($arg),*) }
                }
                #[unsafe(export_name = $post)]
                unsafe extern "C" fn forward_post(ret: i32) {
                    unsafe { generated_post(ret) }
                }
            };
        )*
    };
}

/// Exports a [`Provider`] as the component's implementation of the `provider` world.
/// Use it exactly once, at the crate root of a `cdylib`:
///
/// ```ignore
/// easel_sdk::export!(MyProvider);
/// ```
///
/// Off wasm32 it only checks that the type implements [`Provider`] and [`Default`], so
/// native tests of the same crate compile unchanged.
#[macro_export]
macro_rules! export {
    ($provider:ty) => {
        const _: fn() = || {
            fn assert_provider<P: $crate::Provider + ::core::default::Default>() {}
            assert_provider::<$provider>();
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __EaselComponent = $crate::wasm::Component<$provider>;
            $crate::wasm::bindings::__export_provider_world!(__EaselComponent with_types_in $crate::wasm::bindings);
            $crate::__forward_exports! {
                "manifest" as "manifest", "cabi_post_manifest" : fn() -> i32;
                "submit" as "submit", "cabi_post_submit" : fn(a, b, c, d, e, f, g, h, i, j) -> i32;
                "poll" as "cm32p2||poll", "cm32p2||poll_post" : fn(a, b) -> i32;
                "cancel" as "cancel", "cabi_post_cancel" : fn(a, b) -> i32;
                "easel:provider/chat@0.5.0#start" as "easel:provider/chat@0.5.0#start",
                    "cabi_post_easel:provider/chat@0.5.0#start" : fn(a, b, c, d, e, f) -> i32;
                "easel:provider/chat@0.5.0#[method]chat-stream.next"
                    as "easel:provider/chat@0.5.0#[method]chat-stream.next",
                    "cabi_post_easel:provider/chat@0.5.0#[method]chat-stream.next" : fn(a) -> i32;
            }
            const _: () = {
                unsafe extern "C" {
                    #[link_name = "__easel_sdk_easel:provider/chat@0.5.0#[dtor]chat-stream"]
                    fn generated(rep: i32);
                }
                #[unsafe(export_name = "easel:provider/chat@0.5.0#[dtor]chat-stream")]
                unsafe extern "C" fn forward(rep: i32) {
                    unsafe { generated(rep) }
                }
            };
        };
    };
}
