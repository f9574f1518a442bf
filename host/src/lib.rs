//! easel: a self-hosted generation gateway. One host serves four generation APIs over one
//! durable task engine; providers are WebAssembly plugins or native diffusion.
//!
//! Layout (see DESIGN.md): [`api`] translates HTTP, [`engine`] runs tasks, [`store`] persists
//! them, [`assets`] keeps files, [`providers`] holds the built-in offline provider.

#![deny(missing_docs)]

pub mod api;
pub mod assets;
pub mod config;
pub mod engine;
pub mod metrics;
pub mod net;
pub mod providers;
pub mod server;
pub mod store;
