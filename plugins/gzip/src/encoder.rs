//! Streaming compressors: each chunk goes in as it comes and what the compressor has ready comes out, so
//! memory is the compressor's window, whatever the body's size.

use crate::config::Encoding;
use flate2::{Compress, Compression, FlushCompress, Status};
use std::io::Write;

/// Brotli's window: 2^20 = 1 MiB. Its ring buffer is the larger part of the encoder's memory, so this
/// bounds an instance's use well under the default 16 MiB cap, for a ratio close to the 4 MiB default's.
const BROTLI_WINDOW_BITS: u32 = 20;
/// Brotli's input buffer inside its writer.
const BROTLI_BUFFER: usize = 64 << 10;

pub enum Encoder {
    /// Kept between requests: `reset` reuses zlib's ~300 KiB of state instead of allocating it again.
    Gzip(Box<Compress>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl Encoder {
    /// A compressor for a new body. `gzip` is the instance's kept gzip state, if any.
    pub fn start(
        encoding: Encoding,
        gzip: Option<Box<Compress>>,
        level: u32,
        br_level: u32,
    ) -> Self {
        match encoding {
            Encoding::Gzip => Encoder::Gzip(match gzip {
                Some(mut z) => {
                    z.reset();
                    z
                }
                // 15 window bits: zlib's largest (32 KiB), as nginx's default `gzip_window`.
                None => Box::new(Compress::new_gzip(Compression::new(level), 15)),
            }),
            Encoding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                br_level,
                BROTLI_WINDOW_BITS,
            ))),
        }
    }

    /// Compresses `input` and returns what the compressor has ready. No flush is forced between chunks:
    /// the compressor emits whole blocks as its buffers fill, so a body that arrives in small pieces
    /// compresses as well as one that arrives whole, and the memory held is bounded by those buffers.
    pub fn push(&mut self, input: &[u8]) -> Vec<u8> {
        match self {
            Encoder::Gzip(z) => deflate(z, input, false),
            Encoder::Brotli(w) => {
                w.write_all(input).expect("writing to a Vec cannot fail");
                std::mem::take(w.get_mut())
            }
        }
    }

    /// Compresses the last `input` and ends the stream; gives back the gzip state to keep for the next
    /// body.
    pub fn finish(self, input: &[u8]) -> (Vec<u8>, Option<Box<Compress>>) {
        match self {
            Encoder::Gzip(mut z) => (deflate(&mut z, input, true), Some(z)),
            Encoder::Brotli(mut w) => {
                w.write_all(input).expect("writing to a Vec cannot fail");
                // The writer ends the stream when it is closed.
                (w.into_inner(), None)
            }
        }
    }
}

fn deflate(z: &mut Compress, mut input: &[u8], end: bool) -> Vec<u8> {
    let flush = if end {
        FlushCompress::Finish
    } else {
        FlushCompress::None
    };
    // Text compresses to well under half; the loop grows the buffer for the rest.
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    loop {
        let before = z.total_in();
        let status = z
            .compress_vec(input, &mut out, flush)
            .expect("deflate with valid state and parameters does not fail");
        input = &input[(z.total_in() - before) as usize..];
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => return out,
            // Without `Finish`, all input taken and room left over means zlib has nothing more to give.
            _ if !end && input.is_empty() && room_left => return out,
            _ => out.reserve(out.capacity().max(4096)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    fn text(n: usize) -> Vec<u8> {
        b"the quick brown fox jumps over the lazy dog 0123456789\n"
            .iter()
            .copied()
            .cycle()
            .take(n)
            .collect()
    }

    /// Pseudo-random bytes that do not compress (xorshift).
    fn noise(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn compress(encoder: Encoder, body: &[u8], chunk: usize) -> (Vec<u8>, Option<Box<Compress>>) {
        let mut encoder = encoder;
        let mut out = Vec::new();
        for piece in body.chunks(chunk.max(1)) {
            out.extend(encoder.push(piece));
        }
        let (rest, kept) = encoder.finish(&[]);
        out.extend(rest);
        (out, kept)
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(data).read_to_end(&mut out).unwrap();
        out
    }

    fn unbrotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        brotli::Decompressor::new(data, 4096)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn gzip_round_trips_in_any_chunking_and_reuses_its_state() {
        let mut kept = None;
        for body in [text(300_000), noise(200_000), Vec::new(), b"x".to_vec()] {
            for chunk in [1 << 20, 65536, 100, 1] {
                let e = Encoder::start(Encoding::Gzip, kept.take(), 6, 4);
                let (out, back) = compress(e, &body, chunk);
                assert_eq!(gunzip(&out), body, "chunk {chunk}");
                kept = back;
                if chunk == 1 << 20 && body.len() == 300_000 {
                    assert!(out.len() < body.len() / 20, "text compresses");
                }
            }
        }
    }

    #[test]
    fn brotli_round_trips_in_any_chunking() {
        for body in [text(300_000), noise(100_000), Vec::new()] {
            for chunk in [65536, 100] {
                let e = Encoder::start(Encoding::Brotli, None, 6, 4);
                let (out, kept) = compress(e, &body, chunk);
                assert_eq!(unbrotli(&out), body);
                assert!(kept.is_none());
            }
        }
    }

    #[test]
    fn output_comes_out_while_the_body_streams() {
        let mut e = Encoder::start(Encoding::Gzip, None, 6, 4);
        let body = noise(1 << 20);
        let streamed: usize = body.chunks(65536).map(|c| e.push(c).len()).sum();
        assert!(streamed > 900_000, "only {streamed} bytes before the end");
    }
}
