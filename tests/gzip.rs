//! Being written.

mod support;
