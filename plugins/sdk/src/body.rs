//! Body transforms: what a header hook hands the SDK to run on its phase's body, chunk by chunk.

use crate::Result;
use core::cell::RefCell;

/// Rewrites one body as it streams: a compressor, a filter. A plugin that declared the body hook makes one
/// in its header hook ([`Request::transform_body`](crate::Request::transform_body) in `on_request`,
/// [`Response::transform_body`](crate::Response::transform_body) in `on_response`). The SDK keeps it for
/// that body alone and drops it when the body ends, so whatever it holds (an encoder's window) can never
/// reach another request.
pub trait Transform {
    /// Called with each chunk, in order. `end` is true exactly once, on the last call, whose chunk may be
    /// empty. The returned bytes replace the chunk (longer, shorter or empty; hold bytes back and return
    /// them on the `end` call if need be).
    fn chunk(&mut self, chunk: Vec<u8>, end: bool) -> Result<Vec<u8>>;
}

/// Which body a transform is for.
#[derive(Clone, Copy)]
pub(crate) enum Phase {
    Request = 0,
    Response = 1,
}

thread_local! {
    /// The transform of the body this instance is serving in each phase. An instance is never re-entered,
    /// and the host runs a body's hooks only on the instance whose header hook started it.
    static TRANSFORMS: RefCell<[Option<Box<dyn Transform>>; 2]> = RefCell::new([None, None]);
}

/// Sets the transform of `phase`'s body (the header hook calls this through the handles).
pub(crate) fn set(phase: Phase, transform: Box<dyn Transform>) {
    TRANSFORMS.with_borrow_mut(|t| t[phase as usize] = Some(transform));
}

/// Drops any transform left from an earlier body of `phase`, one whose end never came (the client went
/// away): the header hook that follows starts with none.
pub(crate) fn clear(phase: Phase) {
    TRANSFORMS.with_borrow_mut(|t| t[phase as usize] = None);
}

pub(crate) fn is_set(phase: Phase) -> bool {
    TRANSFORMS.with_borrow(|t| t[phase as usize].is_some())
}

/// Runs the body's transform on one chunk; on the last chunk, or on an error, the transform is dropped.
pub(crate) fn run(phase: Phase, chunk: Vec<u8>, end: bool) -> Result<Vec<u8>> {
    let taken = TRANSFORMS.with_borrow_mut(|t| t[phase as usize].take());
    let Some(mut transform) = taken else {
        return Err("weir-sdk: a body hook was called with no body transform set".into());
    };
    let output = transform.chunk(chunk, end)?;
    if !end {
        TRANSFORMS.with_borrow_mut(|t| t[phase as usize] = Some(transform));
    }
    Ok(output)
}
