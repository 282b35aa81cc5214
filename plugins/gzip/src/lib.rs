//! Placeholder: being written.
use weir_sdk::Plugin;

#[derive(serde::Deserialize)]
struct Placeholder {}

impl Plugin for Placeholder {}

weir_sdk::export!(Placeholder);
