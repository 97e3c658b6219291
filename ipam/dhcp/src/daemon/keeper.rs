//! Keeping a lease: renewing it at T1 (unicast to its server), rebinding at T2 (broadcast),
//! and losing it (the interface goes down) when it expires or the server refuses it.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use super::held::{container_gone, Held};
use super::{key_text, lock, Daemon, FIRST_RENEWAL_RESEND};
use crate::dhcp4::{DhcpError, Next, Patience};
use cni::error::causes;

impl Daemon {
    /// Renews `held` at T1 (unicast to its server), rebinds at T2 (broadcast to any), and
    /// takes the interface down when the lease expires or the server refuses it. Stops when
    /// told to, or when the container is gone.
    pub(super) fn keep(&self, held: &Held, mut granted: Instant) {
        let mut failed = None;
        loop {
            let lease = lock(&held.record).lease.clone();
            let now = Instant::now();
            match lease.next(granted, now, failed) {
                Next::Wait(until) => {
                    if !held.stop.sleep_until(until) {
                        return;
                    }
                }
                Next::Expired => return self.lose(held, "expired"),
                Next::Extend { rebinding, until } => {
                    let patience = Patience {
                        total: self
                            .settings
                            .resend_timeout
                            .min(until.saturating_duration_since(now)),
                        first_resend: FIRST_RENEWAL_RESEND,
                        max_resend: self.settings.resend_max,
                    };
                    let (asked, asked_at) = (Instant::now(), SystemTime::now());
                    let cancelled = || held.stop.is_stopped();
                    let extended = held
                        .client()
                        .and_then(|client| client.extend(&lease, rebinding, patience, &cancelled));
                    match extended {
                        Ok(renewed) => {
                            log!(
                                "renewed {} of {} for {} s",
                                renewed.address,
                                key_text(&held.key),
                                renewed.lease_time.as_secs()
                            );
                            {
                                let mut record = lock(&held.record);
                                record.lease = renewed;
                                record.granted_at = asked_at;
                            }
                            (granted, failed) = (asked, None);
                            self.persist(held);
                        }
                        Err(DhcpError::Cancelled) => return,
                        Err(DhcpError::Refused { .. }) => {
                            return self.lose(held, "was refused by its server (NAK)")
                        }
                        Err(e) if container_gone(&e) => {
                            log!("{} is gone; forgetting its lease", key_text(&held.key));
                            return self.forget(held);
                        }
                        Err(e) => {
                            log!(
                                "{} {} of {} failed: {}",
                                if rebinding { "rebinding" } else { "renewing" },
                                lease.address,
                                key_text(&held.key),
                                causes(&e)
                            );
                            failed = Some(asked);
                        }
                    }
                }
            }
        }
    }

    /// The lease is lost: the interface goes down and the lease is forgotten.
    pub(super) fn lose(&self, held: &Held, how: &str) {
        let address = lock(&held.record).lease.address;
        let down = match held.take_down() {
            Ok(()) => "taking the interface down".to_string(),
            Err(e) => format!("could not take the interface down: {}", causes(&e)),
        };
        log!("lease {address} of {} {how}; {down}", key_text(&held.key));
        self.forget(held);
    }

    /// Marks `held` lost and drops it unless a newer lease took its place. A slot in use is
    /// left to whoever uses it (an ADD, DEL or GC of the same key drops a lost lease):
    /// waiting for it here could wait for ever, since that user may be waiting for this
    /// keeper to end.
    pub(super) fn forget(&self, held: &Held) {
        held.lost.store(true, Ordering::Release);
        self.leases
            .forget(&held.key, held, || self.unpersist(&held.key));
    }
}
