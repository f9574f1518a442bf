//! easel
