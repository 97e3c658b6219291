//! The engine every table shares: an attachment's elements added, checked, and removed by
//! their keys or found by their owner's comment, over netlink; the base declared with `nft`.

use std::collections::HashSet;
use std::fmt::Write;

use super::tables::Scheme;
use crate::{run, FirewallError};
use cni::id::digest;
use cni::{AttachmentId, ValidAttachments};
use kernel::netlink::nftables::{self, Batch, Data, Element, Field, Key};
use kernel::netlink::NetlinkError;
use kernel::tool::ToolError;

impl Scheme {
    /// `family table`, as nft text names it.
    fn table(&self) -> String {
        format!("{} {}", self.family.name(), self.table)
    }

    fn exclusive(&self, element: &Element) -> bool {
        self.exclusive.contains(&element.set.as_str())
    }

    /// Applies an `nft -f` batch, declaring the base first only when it is missing: the
    /// base's hooked chains make nft fetch and rebuild far more, and it is there after the
    /// first ADD.
    fn apply_on_base(&self, batch: &str) -> Result<(), FirewallError> {
        match apply(batch) {
            Err(FirewallError::Tool(ToolError::Failed { stderr, .. }))
                if stderr.contains("No such file or directory") =>
            {
                apply(&format!("{}{batch}", self.base()))
            }
            other => other,
        }
    }

    /// The declarations, then each base chain flushed and refilled.
    fn base(&self) -> String {
        let mut batch = self.declarations.to_string();
        let table = self.table();
        for (chain, rules) in self.rules {
            let _ = writeln!(batch, "flush chain {table} {chain}");
            for rule in *rules {
                let _ = writeln!(batch, "add rule {table} {chain} {rule}");
            }
        }
        batch
    }

    /// Commits a netlink batch, declaring the base (with nft) when the table or a map is
    /// missing (ENOENT), then once more.
    pub(super) fn commit_on_base(&self, batch: &Batch) -> Result<(), FirewallError> {
        match batch.commit() {
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                apply(&self.base())?;
                Ok(batch.commit()?)
            }
            other => Ok(other?),
        }
    }

    /// Adds the attachment's elements and manifest. A non-exclusive key another attachment
    /// holds is stale (keys are the attachment's own addresses and ports): it is taken over.
    pub(super) fn add(
        &self,
        owner: &AttachmentId,
        elements: &[Element],
    ) -> Result<(), FirewallError> {
        let manifest = manifest(owner, elements);
        let batch = |take_over: bool| {
            let mut batch = Batch::new(self.family, self.table);
            // Exclusive keys first: a taken one is then the error the kernel reports.
            let (exclusive, shared): (Vec<&Element>, Vec<&Element>) = elements
                .iter()
                .chain([&manifest])
                .partition(|e| self.exclusive(e));
            for element in &exclusive {
                batch.add(element, true);
            }
            for element in shared {
                if take_over {
                    batch.destroy_element(&element.set, &element.key);
                }
                batch.add(element, false);
            }
            batch
        };
        match self.commit_on_base(&batch(false)) {
            Err(FirewallError::Kernel(e))
                if e.already_exists() && elements.iter().any(|e| !self.exclusive(e)) =>
            {
                self.commit_on_base(&batch(true))
            }
            other => other,
        }
    }

    /// [`Scheme::add`] for a chain of rules only nft can compile (they carry an admin's nft
    /// tokens), with elements that jump to it, in one `nft -f` transaction. Everything else
    /// in the text is data nft cannot misread: addresses, numbers, hashed chain names and the
    /// owner's comment, which keeps to an alphabet of its own (see [`comment`]).
    pub(super) fn add_with_chain(
        &self,
        owner: &AttachmentId,
        chain: &str,
        rules: &[String],
        elements: &[Element],
    ) -> Result<(), FirewallError> {
        let comment = comment(owner);
        let table = self.table();
        let mut batch = format!("add chain {table} {chain}\nflush chain {table} {chain}\n");
        for rule in rules {
            let _ = writeln!(batch, "add rule {table} {chain} {rule}");
        }
        for element in elements.iter().chain([&manifest(owner, elements)]) {
            let verb = if self.exclusive(element) {
                "create"
            } else {
                "add"
            };
            let _ = writeln!(
                batch,
                "{verb} element {table} {} {{ {} comment \"{comment}\" : {} }}",
                element.set,
                element.key,
                value(element)
            );
        }
        self.apply_on_base(&batch)
    }

    /// Every element of this scheme's table, read back over netlink.
    fn list(&self) -> Result<Vec<Element>, FirewallError> {
        Ok(nftables::list(self.family, self.table)?)
    }

    /// Deletes the listed elements `select` picks, in one batch (see [`Scheme::remove`]); an
    /// element another attachment took over since the listing makes the kernel refuse the
    /// batch, and a second listing no longer picks it.
    fn remove_where(&self, select: impl Fn(&Element) -> bool) -> Result<(), FirewallError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let listed = self.list()?;
            let picked: Vec<&Element> = listed.iter().filter(|e| select(e)).collect();
            match self.remove(&picked) {
                Err(e) if attempts == 1 && e.already_exists() => {}
                other => return Ok(other?),
            }
        }
    }

    /// Deletes `elements` and the chains they jump to. Each is first added again with the
    /// value listed: one that maps elsewhere now (ADD takes stale keys over) is refused
    /// (EEXIST), and the whole batch with it.
    fn remove(&self, elements: &[&Element]) -> Result<(), NetlinkError> {
        let mut batch = Batch::new(self.family, self.table);
        for element in elements {
            if element.data.is_some() {
                batch.add_element(
                    &element.set,
                    &element.key,
                    element.data.as_ref(),
                    None,
                    false,
                );
            }
            batch.delete_element(&element.set, &element.key);
        }
        let mut chains: Vec<&str> = elements
            .iter()
            .filter_map(|e| match &e.data {
                Some(Data::Jump(chain)) => Some(chain.as_str()),
                _ => None,
            })
            .collect();
        chains.sort_unstable();
        chains.dedup();
        for chain in chains {
            batch.flush_chain(chain);
            batch.delete_chain(chain);
        }
        batch.commit()
    }

    /// Removes an attachment's elements (and `chain`, when it has one). With `elements` known
    /// (from prevResult) this is one netlink batch that lists nothing: the manifest of
    /// exactly these elements goes first, and the kernel refuses the whole batch when it is
    /// missing, as when a key another attachment holds maps elsewhere (each element is added
    /// before it is deleted) or the table is missing (never declared for a DEL). Then, as
    /// without elements, they are found by owner.
    pub(super) fn delete(
        &self,
        owner: &AttachmentId,
        elements: &[Element],
        chain: Option<&str>,
    ) -> Result<(), FirewallError> {
        if !elements.is_empty() {
            let mut batch = Batch::new(self.family, self.table);
            let manifest = manifest(owner, elements);
            batch.delete_element(&manifest.set, &manifest.key);
            if let Some(chain) = chain {
                batch.add_chain(chain);
            }
            for element in elements {
                batch.add(element, false);
                batch.delete_element(&element.set, &element.key);
            }
            if let Some(chain) = chain {
                batch.flush_chain(chain);
                batch.delete_chain(chain);
            }
            if batch.commit().is_ok() {
                return Ok(());
            }
        }
        self.remove_where(owned_by(owner))
    }

    /// Whether every element is there under the owner's name.
    pub(super) fn has(
        &self,
        owner: &AttachmentId,
        elements: &[Element],
    ) -> Result<bool, FirewallError> {
        let listed = self.list()?;
        let ours = owned_by(owner);
        // Looked up once: a mapping of 1,000 ports has thousands of elements.
        let held: HashSet<(&str, &Key)> = listed
            .iter()
            .filter(|e| ours(e))
            .map(|e| (e.set.as_str(), &e.key))
            .collect();
        Ok(elements
            .iter()
            .all(|e| held.contains(&(e.set.as_str(), &e.key))))
    }

    /// The exclusive keys of `elements` that another owner holds (all of them, when none is:
    /// then the owner's own elements map them elsewhere), as nft writes them.
    pub(super) fn held_by_others(
        &self,
        owner: &AttachmentId,
        elements: &[Element],
    ) -> Result<Vec<String>, FirewallError> {
        let listed = self.list()?;
        let ours = owned_by(owner);
        let held: HashSet<(&str, &Key)> = listed
            .iter()
            .filter(|e| !ours(e))
            .map(|e| (e.set.as_str(), &e.key))
            .collect();
        let exclusive = elements.iter().filter(|e| self.exclusive(e));
        let mut taken: Vec<String> = exclusive
            .clone()
            .filter(|e| held.contains(&(e.set.as_str(), &e.key)))
            .map(|e| e.key.to_string())
            .collect();
        if taken.is_empty() {
            taken = exclusive.map(|e| e.key.to_string()).collect();
        }
        // A key with conditions is in two maps.
        taken.dedup();
        Ok(taken)
    }

    /// Removes the elements of the attachments of `valid`'s network that are not in it,
    /// whichever form their comments take.
    pub(super) fn gc(&self, valid: &ValidAttachments) -> Result<(), FirewallError> {
        self.remove_where(stale_in(valid))
    }
}

/// Picks the elements whose comment names `owner`, in any form.
pub(super) fn owned_by(owner: &AttachmentId) -> impl Fn(&Element) -> bool {
    let ours = comments(owner);
    move |element| element.comment.as_ref().is_some_and(|c| ours.contains(c))
}

/// Picks the elements of the attachments of `valid`'s network that it does not list,
/// whichever form their comments take.
pub(super) fn stale_in(valid: &ValidAttachments) -> impl Fn(&Element) -> bool + '_ {
    let kept: HashSet<String> = valid.iter().flat_map(|id| comments(&id)).collect();
    move |element| {
        element
            .comment
            .as_deref()
            .is_some_and(|c| AttachmentId::tag_is_of(c, valid.network()) && !kept.contains(c))
    }
}

/// What an element maps to, as nft writes it.
fn value(element: &Element) -> String {
    element
        .data
        .as_ref()
        .map(Data::to_string)
        .unwrap_or_default()
}

/// The longest comment nft accepts and reads back; elements carry their owner in it.
const COMMENT_MAX: usize = 128;

/// How elements name their owner (see [`AttachmentId::tag`]): in a comment nft keeps, of an
/// alphabet that stays data inside `nft -f` text too, where rules with an admin's conditions
/// go.
pub(super) fn comment(owner: &AttachmentId) -> String {
    owner.tag(COMMENT_MAX)
}

/// Every comment an owner's elements may carry, this version's and earlier ones': DEL,
/// CHECK and GC still find what those added.
fn comments(owner: &AttachmentId) -> Vec<String> {
    owner.tags(COMMENT_MAX)
}

/// The first 32 bits of SHA-512 over `text`.
fn digest32(text: &str) -> u32 {
    u32::from_str_radix(&digest(text, 8), 16).unwrap_or_default()
}

/// The value of an owner's elements in maps that serve as sets.
pub(super) fn owner_tag(owner: &AttachmentId) -> u32 {
    digest32(&comment(owner))
}

/// The element that says which elements an attachment owns: owner tag . digest of them.
pub(super) fn manifest(owner: &AttachmentId, elements: &[Element]) -> Element {
    let listed: String = elements
        .iter()
        .map(|e| format!("{} {} {}\n", e.set, e.key, value(e)))
        .collect();
    let tag = owner_tag(owner);
    Element {
        set: "manifests".to_string(),
        key: Key::exact(vec![Field::Mark(tag), Field::Mark(digest32(&listed))]),
        data: Some(Data::Mark(tag)),
        comment: Some(comment(owner)),
    }
}

fn apply(batch: &str) -> Result<(), FirewallError> {
    run("nft", &["-f", "-"], batch).map(drop)
}
