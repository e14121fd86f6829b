//! Produce requests in flight on one connection.
//!
//! Answers must go out in request order, but a produce spends most of its time waiting for its
//! group commit. So the connection queues a produce's appends with the log writer
//! ([`dispatch::start_produce`]) and reads the next request instead of waiting: a producer with
//! several requests in flight (librdkafka sends up to 5 per connection when idempotent, more
//! otherwise) then gets them into one commit instead of one commit each. The writer applies
//! appends in the order they were queued, so offsets and idempotent sequences keep request
//! order. Only produces are pipelined: any other request first waits for every answer before
//! it, so it sees their effects, as on a connection that handles one request at a time.
//!
//! Bounded by [`MAX_IN_FLIGHT`] requests and by the connection's frame limit in request bytes,
//! so a connection holds no more than it could with one maximal request.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use bytes::BytesMut;

use super::dispatch::{PendingProduce, Reply};
use super::response::EncodeError;

/// Most produce requests answered out of one connection's queue at once; Kafka's limit for
/// idempotent producers (`max.in.flight.requests.per.connection`), which librdkafka follows.
pub const MAX_IN_FLIGHT: usize = 5;

/// A produce's answer once durable: what to do, and the framed answer for `Reply::Send`.
pub type Answer = (Result<Reply, EncodeError>, BytesMut);

type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

pub struct Pipeline {
    /// Oldest first, each with its request's size in bytes.
    queue: VecDeque<(AnswerFuture, usize)>,
    /// Request bytes held by the queue.
    bytes: usize,
    /// Most request bytes held at once (past the first request): the connection's frame limit.
    max_bytes: usize,
}

impl Pipeline {
    pub fn new(max_bytes: usize) -> Pipeline {
        Pipeline {
            queue: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether a request of `len` bytes may join without waiting for an answer first.
    pub fn has_room(&self, len: usize) -> bool {
        self.queue.is_empty()
            || (self.queue.len() < MAX_IN_FLIGHT && self.bytes + len <= self.max_bytes)
    }

    pub fn push(&mut self, pending: PendingProduce, len: usize) {
        let answer = async move {
            let mut out = BytesMut::new();
            let reply = pending.answer(&mut out).await;
            (reply, out)
        };
        self.queue.push_back((Box::pin(answer), len));
        self.bytes += len;
    }

    /// The oldest produce's answer once it is durable; `None` when nothing is in flight.
    ///
    /// Cancel-safe: the answer being waited for stays at the head of the queue until it is
    /// complete, so `select!` may drop this future and call again.
    pub async fn next_answer(&mut self) -> Option<Answer> {
        let (head, _) = self.queue.front_mut()?;
        let answer = head.as_mut().await;
        if let Some((_, len)) = self.queue.pop_front() {
            self.bytes -= len;
        }
        Some(answer)
    }
}
