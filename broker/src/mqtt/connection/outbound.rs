//! What a connection needs only to send messages to its client: its subscriptions, delivery
//! from the log, the outgoing window and the retained messages still to send. Created by the
//! first SUBSCRIBE (or a resumed session), so a publish-only sensor, the common case on a
//! gateway, does not carry it (about 500 bytes each, of 10,000 idle connections).

use std::sync::Arc;

use bytes::BytesMut;

use crate::log::Log;
use crate::mqtt::auth::Permissions;
use crate::mqtt::delivery::{Delivery, Wake};
use crate::mqtt::inflight::Outgoing;
use crate::mqtt::read_cache::ReadCache;
use crate::mqtt::retained::RetainedStore;
use crate::mqtt::retained_out::RetainedOut;
use crate::mqtt::routing::Router;
use crate::mqtt::subscriptions::Subscriptions;
use crate::mqtt::wire::Wire;

use super::{EVENTS_PER_WAKE, OUT_DELIVERY_LIMIT};

pub(super) struct Outbound {
    pub subs: Subscriptions,
    pub delivery: Delivery,
    pub outgoing: Outgoing,
    /// Retained messages still to send for recent SUBSCRIBEs.
    pub retained_out: RetainedOut,
}

impl Outbound {
    /// For `client_id` (to recognise its own publishes), allowed to read what `permissions`
    /// allow, with at most `window` deliveries unacknowledged.
    pub fn new(
        log: Log,
        reads: Arc<ReadCache>,
        client_id: &str,
        permissions: Permissions,
        window: usize,
    ) -> Outbound {
        let mut delivery = Delivery::new(log, reads);
        delivery.client_id = client_id.to_string();
        delivery.permissions = permissions;
        Outbound {
            subs: Subscriptions::default(),
            delivery,
            outgoing: Outgoing::new(window),
            retained_out: RetainedOut::default(),
        }
    }

    /// Encodes retained messages, then deliveries from the log, into `out` while the window
    /// and the buffer have room; true if more is ready at once.
    pub fn pump(
        &mut self,
        retained: &RetainedStore,
        wire: &Wire,
        out: &mut BytesMut,
        now_ms: i64,
    ) -> bool {
        let mut more = false;
        if !self.retained_out.is_empty() {
            more = self.retained_out.pump(
                retained,
                &mut self.outgoing,
                wire,
                out,
                OUT_DELIVERY_LIMIT,
                now_ms,
            );
        }
        more | self.delivery.pump(
            &self.subs,
            &mut self.outgoing,
            wire,
            out,
            OUT_DELIVERY_LIMIT,
            now_ms,
        )
    }

    /// Append events (or a share group's nudge), with those already queued.
    pub fn on_wake(&mut self, wake: Wake, router: &Router) {
        self.delivery.on_wake(wake, &self.subs, router);
        for wake in self.delivery.ready_events(EVENTS_PER_WAKE) {
            self.delivery.on_wake(wake, &self.subs, router);
        }
    }
}

/// The next log event for a subscriber; never, for a connection without subscriptions.
pub(super) async fn next_wake(outbound: &mut Option<Box<Outbound>>) -> Wake {
    match outbound {
        Some(o) => o.delivery.wake().await,
        None => std::future::pending().await,
    }
}
