//! How an upstream's requests travel: HTTP/1.1 by Weir's own client ([`h1`]), one request at a time per
//! connection, written and read in the request's task; HTTP/2 by hyper's pooling client, which multiplexes
//! the streams of many requests on one connection and so needs a task of its own for it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;

use super::h1::{self, Idle};
use super::outbound::Outbound;
use super::tls::Connector;
use crate::body::BoxError;

#[derive(Clone)]
pub enum Transport {
    Http1(h1::Client),
    // Boxed: hyper's client is ten times the size of Weir's, and HTTP/1.1 is the common case.
    Http2(Box<Client<Connector, Outbound>>),
}

/// A failed send, with its causes: the request body's error among them when it was the body that failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Http1(#[from] h1::SendError),
    #[error(transparent)]
    Http2(#[from] hyper_util::client::legacy::Error),
}

impl SendError {
    /// Nothing was sent: no connection could be made.
    pub fn is_connect(&self) -> bool {
        match self {
            SendError::Http1(e) => matches!(e, h1::SendError::Connect(_)),
            SendError::Http2(e) => e.is_connect(),
        }
    }
}

impl Transport {
    /// Sends `request` to the endpoint whose kept HTTP/1.1 connections are `idle`, and waits for the
    /// response head.
    pub async fn send(
        &self,
        idle: &Arc<Idle>,
        request: Request<Outbound>,
    ) -> Result<Response<Received>, SendError> {
        match self {
            Transport::Http1(client) => Ok(client.send(idle, request).await?.map(Received::Http1)),
            Transport::Http2(client) => Ok(client.request(request).await?.map(Received::Http2)),
        }
    }
}

/// A response body as it comes from the upstream.
pub enum Received {
    Http1(h1::Body),
    Http2(Incoming),
}

impl Body for Received {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Received::Http1(body) => Pin::new(body).poll_frame(cx),
            Received::Http2(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Received::Http1(body) => body.is_end_stream(),
            Received::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Received::Http1(body) => body.size_hint(),
            Received::Http2(body) => body.size_hint(),
        }
    }
}
