//! The daemon's leases, one slot per attachment. A request locks its attachment's slot for
//! as long as it works on it (acquiring, giving back), so two requests for the same
//! interface never run two exchanges; a lease's keeper only ever tries the lock, since the
//! request holding it may be waiting for that keeper to end. Slots nobody uses and that hold
//! nothing are dropped, so a daemon that runs for months keeps nothing of failed or released
//! leases. No DHCP here: the rules are tested without a server, a namespace or root.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, TryLockError};

use super::lock;
use cni::{AttachmentId, ValidAttachments};

/// A lease as the slots see it.
pub(super) trait Leased {
    /// Expired, refused or gone: its keeper has ended, and whoever next holds its slot drops
    /// it (the keeper cannot always take the slot itself).
    fn is_lost(&self) -> bool;
}

/// One attachment's slot: the lease it holds, if any.
pub(super) type Slot<T> = Arc<Mutex<Option<Arc<T>>>>;

/// What a slot held when its lease was taken out.
pub(super) enum Taken<T> {
    Nothing,
    /// Lost already: only its record is left to remove.
    Lost(Arc<T>),
    /// Still kept: it must be given back (its keeper stopped, a RELEASE sent).
    Kept(Arc<T>),
}

pub(super) struct Slots<T> {
    map: Mutex<HashMap<AttachmentId, Slot<T>>>,
}

impl<T: Leased> Slots<T> {
    pub(super) fn new() -> Self {
        Slots {
            map: Mutex::new(HashMap::new()),
        }
    }

    /// `key`'s slot, made if missing; lock it for as long as the request works on `key`.
    pub(super) fn slot(&self, key: &AttachmentId) -> Slot<T> {
        Arc::clone(lock(&self.map).entry(key.clone()).or_default())
    }

    /// `key`'s slot if there is one.
    pub(super) fn existing(&self, key: &AttachmentId) -> Option<Slot<T>> {
        lock(&self.map).get(key).cloned()
    }

    /// The lease `key` holds and still keeps, waiting for a request under way on `key`.
    pub(super) fn kept(&self, key: &AttachmentId) -> Option<Arc<T>> {
        let held = self.existing(key).and_then(|slot| lock(&slot).clone());
        self.drop_if_unused(key);
        held.filter(|held| !held.is_lost())
    }

    /// Drops `key`'s slot if it holds no lease and no request uses it. Slots are cloned only
    /// under the map's lock, so under it a count of one means nobody else has it.
    pub(super) fn drop_if_unused(&self, key: &AttachmentId) {
        let mut map = lock(&self.map);
        let unused = |slot: &Slot<T>| Arc::strong_count(slot) == 1 && lock(slot).is_none();
        if map.get(key).is_some_and(unused) {
            map.remove(key);
        }
    }

    /// The attachments of `valid`'s network that hold a slot but are not in `valid`.
    pub(super) fn stale(&self, valid: &ValidAttachments) -> Vec<AttachmentId> {
        let mut stale: Vec<AttachmentId> = lock(&self.map)
            .keys()
            .filter(|key| key.network == valid.network() && !valid.contains(key))
            .cloned()
            .collect();
        stale.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        stale
    }

    /// Takes the lease out of a locked slot.
    pub(super) fn take(held: &mut Option<Arc<T>>) -> Taken<T> {
        match held.take() {
            None => Taken::Nothing,
            Some(lost) if lost.is_lost() => Taken::Lost(lost),
            Some(kept) => Taken::Kept(kept),
        }
    }

    /// A keeper's end: empties `key`'s slot if it still holds `held` and no request uses it,
    /// calling `cleared` while it is still locked (so that no request's new lease can come
    /// in between), and drops the slot. Leaves the slot alone otherwise: a newer lease took
    /// its place, or the request using it drops the lost lease itself.
    pub(super) fn forget(&self, key: &AttachmentId, held: &T, cleared: impl FnOnce()) {
        let Some(slot) = self.existing(key) else {
            return;
        };
        let mut current = match slot.try_lock() {
            Ok(current) => current,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        if current
            .as_ref()
            .is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), held))
        {
            *current = None;
            cleared();
            drop(current);
            drop(slot);
            self.drop_if_unused(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Fake {
        lost: AtomicBool,
    }

    impl Leased for Fake {
        fn is_lost(&self) -> bool {
            self.lost.load(Ordering::Acquire)
        }
    }

    fn key(container: &str) -> AttachmentId {
        AttachmentId::new("net", container, "eth0")
    }

    /// `key`'s slot with a lease in it, as an ADD leaves it.
    fn leased(slots: &Slots<Fake>, key: &AttachmentId) -> Arc<Fake> {
        let lease = Arc::new(Fake::default());
        *lock(&slots.slot(key)) = Some(Arc::clone(&lease));
        lease
    }

    #[test]
    fn a_slot_is_kept_while_it_holds_a_lease_or_a_request_uses_it() {
        let slots = Slots::<Fake>::new();
        // A failed ADD: the slot held nothing.
        drop(slots.slot(&key("a")));
        slots.drop_if_unused(&key("a"));
        assert_eq!(lock(&slots.map).len(), 0);
        leased(&slots, &key("b"));
        slots.drop_if_unused(&key("b"));
        assert_eq!(lock(&slots.map).len(), 1, "it holds a lease");
        let in_use = slots.slot(&key("c"));
        slots.drop_if_unused(&key("c"));
        assert_eq!(lock(&slots.map).len(), 2, "a request has it");
        drop(in_use);
        slots.drop_if_unused(&key("c"));
        assert_eq!(lock(&slots.map).len(), 1);
    }

    #[test]
    fn a_lookup_sees_kept_leases_only_and_leaves_no_slot_behind() {
        let slots = Slots::<Fake>::new();
        let lease = leased(&slots, &key("a"));
        assert!(slots.kept(&key("a")).is_some());
        lease.lost.store(true, Ordering::Release);
        assert!(slots.kept(&key("a")).is_none(), "a lost lease");
        assert!(slots.kept(&key("b")).is_none());
        assert_eq!(lock(&slots.map).len(), 1, "the lookup made no slot for b");
    }

    #[test]
    fn taking_a_lease_says_whether_it_must_be_given_back() {
        let slots = Slots::<Fake>::new();
        let lease = leased(&slots, &key("a"));
        let slot = slots.slot(&key("a"));
        assert!(matches!(Slots::take(&mut lock(&slot)), Taken::Kept(_)));
        assert!(matches!(Slots::take(&mut lock(&slot)), Taken::Nothing));
        lease.lost.store(true, Ordering::Release);
        *lock(&slot) = Some(lease);
        assert!(matches!(Slots::take(&mut lock(&slot)), Taken::Lost(_)));
    }

    #[test]
    fn a_keeper_forgets_its_own_lease_only_and_never_waits_for_a_slot() {
        let slots = Slots::<Fake>::new();
        let old = leased(&slots, &key("a"));
        let new = leased(&slots, &key("a"));
        let mut cleared = 0;
        slots.forget(&key("a"), &old, || cleared += 1);
        assert_eq!(cleared, 0, "a newer lease took its place");
        assert!(slots.kept(&key("a")).is_some_and(|k| Arc::ptr_eq(&k, &new)));

        let slot = slots.slot(&key("a"));
        let busy = lock(&slot);
        slots.forget(&key("a"), &new, || cleared += 1);
        assert_eq!(cleared, 0, "a request holds the slot: left to it");
        drop(busy);
        drop(slot);

        slots.forget(&key("a"), &new, || cleared += 1);
        assert_eq!(cleared, 1);
        assert_eq!(lock(&slots.map).len(), 0, "the emptied slot is dropped");
        slots.forget(&key("a"), &new, || cleared += 1);
        assert_eq!(cleared, 1, "no slot: nothing to forget");
    }

    #[test]
    fn gc_finds_the_leases_of_its_network_missing_from_the_valid_list() {
        let slots = Slots::<Fake>::new();
        for container in ["a", "b", "c"] {
            leased(&slots, &key(container));
        }
        leased(&slots, &AttachmentId::new("other", "d", "eth0"));
        let valid = serde_json::json!({"cni.dev/valid-attachments": [
            {"containerID": "a", "ifname": "eth0"},
            {"containerID": "c", "ifname": "eth1"},
        ]});
        let valid = ValidAttachments::of_request(&valid, "net").expect("a valid list");
        assert_eq!(slots.stale(&valid), [key("b"), key("c")]);
    }
}
