//! Helpers the vendor plugins share, so each plugin keeps only its vendor's own wire format:
//!
//! - [`media`]: turning the host's input-media records into what vendors accept (a public
//!   URL, or a base64 `data:` URL built from the bytes), and picking inputs by role;
//! - [`chat`]: the OpenAI chat-completions wire format (request body, the schema of the tool
//!   parameters, and the answer streamed as `chat.completion.chunk` events or whole, text and tool
//!   calls), which DashScope's compatible mode, Volcengine Ark, Zhipu and OpenAI all speak;
//! - [`handle`]: pending handles as short, versioned strings (the one way plugins make and
//!   read them, the region of a task included), and the check on task ids inside them;
//! - [`outcome`]: what `poll` answers for a task the vendor reports succeeded without any
//!   output (failed at once, not polled as an outage);
//! - [`region`]: vendors with a global and a mainland China platform (Vidu, Kling,
//!   MiniMax): the operator's choice between them.
//!
//! It is an ordinary library crate linked into each plugin; it is not a plugin itself.

pub mod chat;
pub mod handle;
pub mod media;
pub mod outcome;
pub mod region;
