//! Which protocol a client connection speaks: HTTP/2 opens with its preface, anything else is HTTP/1.1.
//!
//! hyper-util's version detection does the same, but gives what it read back as a separate first read,
//! so hyper's HTTP/1.1 parser sees the first 24 bytes of a head alone, reads again for the rest, and grows
//! its 8 KiB read buffer to 16 KiB, which the connection keeps for its whole life. [`Sniffed`] hands the
//! bytes back together with what else has arrived, so a head sent in one piece is read in one piece.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection whose first bytes have been read, and are read again first.
pub struct Sniffed<I> {
    io: I,
    first: [u8; PREFACE.len()],
    len: usize,
    at: usize,
}

impl<I: AsyncRead + Unpin> Sniffed<I> {
    /// Reads until the bytes part from the preface, or are all of it, or the client closes.
    pub async fn read(mut io: I) -> io::Result<Sniffed<I>> {
        let mut first = [0; PREFACE.len()];
        let mut len = 0;
        while len < first.len() {
            let n = io.read(&mut first[len..]).await?;
            len += n;
            if n == 0 || first[..len] != PREFACE[..len] {
                break;
            }
        }
        Ok(Sniffed {
            io,
            first,
            len,
            at: 0,
        })
    }

    /// The client opened with HTTP/2's preface.
    pub fn is_h2(&self) -> bool {
        self.first[..self.len] == PREFACE[..]
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Sniffed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at == this.len {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = buf.remaining().min(this.len - this.at);
        buf.put_slice(&this.first[this.at..this.at + n]);
        this.at += n;
        if this.at == this.len && buf.remaining() > 0 {
            // The rest of what has arrived, in the same read. Nothing more yet, or an error, is for the next
            // read to find: these bytes are the answer to this one.
            let _ = Pin::new(&mut this.io).poll_read(cx, buf);
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Sniffed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn sniff(sent: &[&[u8]]) -> (bool, Vec<u8>) {
        let (client, server) = tokio::io::duplex(1 << 16);
        let writer = {
            let sent: Vec<Vec<u8>> = sent.iter().map(|s| s.to_vec()).collect();
            let mut client = client;
            tokio::spawn(async move {
                for piece in sent {
                    client.write_all(&piece).await.expect("write");
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut sniffed = Sniffed::read(server).await.expect("sniffed");
        let h2 = sniffed.is_h2();
        writer.await.expect("writer");
        let mut all = Vec::new();
        sniffed.read_to_end(&mut all).await.expect("read");
        (h2, all)
    }

    #[tokio::test]
    async fn tells_the_preface_from_a_request_and_gives_every_byte_back() {
        let request = b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n".as_slice();
        assert_eq!(sniff(&[request]).await, (false, request.to_vec()));
        let h2 = [PREFACE.as_slice(), b"\0\0\0\x04\0\0\0\0\0"].concat();
        assert_eq!(sniff(&[&h2[..10], &h2[10..]]).await, (true, h2.clone()));
        // `PRI` alone is no preface; nor is a client that closes half-way through one.
        assert!(!sniff(&[b"PRI /x HTTP/1.1\r\n\r\n"]).await.0);
        assert_eq!(sniff(&[b"PRI * HT"]).await, (false, b"PRI * HT".to_vec()));
        assert_eq!(sniff(&[]).await, (false, Vec::new()));
    }

    #[tokio::test]
    async fn a_head_sent_at_once_is_read_at_once() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let request = b"GET /a/long/enough/target HTTP/1.1\r\nhost: x\r\n\r\n";
        client.write_all(request).await.expect("write");
        let mut sniffed = Sniffed::read(server).await.expect("sniffed");
        let mut buf = [0; 256];
        let n = sniffed.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], request);
    }
}
