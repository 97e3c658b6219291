//! Tuning a container interface (sysctls, MAC, MTU, flags, queue length, name) with the
//! original values recorded first, so DEL can put every one of them back.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use cni::config::validate_ifname;
use cni::{Error, ProtocolError, Result};
use kernel::netlink::{Link, MacAddr, Netlink};
use kernel::netns::Netns;
use kernel::sysctl::{self, SysctlError};

/// Values of an interface, each present only when it is to be changed (or was recorded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub promisc: Option<bool>,
    pub allmulti: Option<bool>,
    pub txqlen: Option<u32>,
    pub name: Option<String>,
    /// Keys in dotted form, `IFNAME` already replaced.
    pub sysctls: BTreeMap<String, String>,
    /// Whether the link is up: recorded when it is renamed, since a rename takes it down
    /// and an ADD killed in between must not leave it so. Older records lack it.
    #[serde(default)]
    pub up: Option<bool>,
}

/// Validates a sysctl key for use inside a container: only `net.*`, which is per
/// namespace; anything else would change the host for every container.
pub fn sysctl_key(key: &str, ifname: &str) -> Result<String, ProtocolError> {
    let dotted = key.replace('/', ".");
    let parts: Vec<&str> = dotted.split('.').collect();
    let field = format!("sysctl.{key}");
    if parts.first() != Some(&"net") || parts.len() < 2 {
        return Err(ProtocolError::config(
            field,
            "only net.* sysctls can be set in a container",
        ));
    }
    if parts.iter().any(|p| p.is_empty() || *p == "..") {
        return Err(ProtocolError::config(field, "is not a sysctl name"));
    }
    Ok(parts
        .iter()
        .map(|p| if *p == "IFNAME" { ifname } else { p })
        .collect::<Vec<_>>()
        .join("."))
}

impl Settings {
    /// The current values of exactly the keys `wanted` changes.
    pub fn current(netns: &Netns, link: &Link, wanted: &Settings) -> Result<Settings> {
        let keys: Vec<String> = wanted.sysctls.keys().cloned().collect();
        let sysctls = netns.run(|| -> Result<BTreeMap<String, String>> {
            keys.into_iter()
                .map(|key| Ok((key.clone(), sysctl::get(&key)?)))
                .collect()
        })??;
        Ok(Settings {
            mac: wanted.mac.as_ref().and(link.mac.map(|m| m.to_string())),
            mtu: wanted.mtu.map(|_| link.mtu),
            promisc: wanted.promisc.map(|_| link.promisc),
            allmulti: wanted.allmulti.map(|_| link.allmulti),
            txqlen: wanted.txqlen.map(|_| link.txqlen),
            name: wanted.name.as_ref().map(|_| link.name.clone()),
            sysctls,
            up: wanted.name.as_ref().map(|_| link.up),
        })
    }

    /// These settings with per-interface sysctl keys naming `to` instead of `from`.
    fn keys_renamed(&self, from: &str, to: &str) -> Settings {
        let sysctls = self
            .sysctls
            .iter()
            .map(|(key, value)| {
                let renamed: Vec<&str> = key
                    .split('.')
                    .map(|part| if part == from { to } else { part })
                    .collect();
                (renamed.join("."), value.clone())
            })
            .collect();
        Settings {
            sysctls,
            ..self.clone()
        }
    }

    /// These values, completed with `fallback`'s where these have none.
    pub fn or(self, fallback: Settings) -> Settings {
        let mut sysctls = fallback.sysctls;
        sysctls.extend(self.sysctls);
        Settings {
            mac: self.mac.or(fallback.mac),
            mtu: self.mtu.or(fallback.mtu),
            promisc: self.promisc.or(fallback.promisc),
            allmulti: self.allmulti.or(fallback.allmulti),
            txqlen: self.txqlen.or(fallback.txqlen),
            name: self.name.or(fallback.name),
            sysctls,
            up: self.up.or(fallback.up),
        }
    }

    /// ADD: applies every present value to `link` inside `netns`, stopping at the first the
    /// kernel refuses (the caller's undo takes back what was done).
    pub fn apply(
        &self,
        netns: &Netns,
        netlink: &mut Netlink,
        link: &Link,
        keys_name: &str,
    ) -> Result<()> {
        self.change(netns, netlink, link, keys_name, Mode::Apply)
    }

    /// DEL and undo: puts these (recorded) values back, going past any the kernel refuses so
    /// that one does not keep the rest from being restored, and reporting the first. A sysctl
    /// the kernel has dropped since is nothing to restore.
    pub fn restore(
        &self,
        netns: &Netns,
        netlink: &mut Netlink,
        link: &Link,
        keys_name: &str,
    ) -> Result<()> {
        self.change(netns, netlink, link, keys_name, Mode::Restore)
    }

    /// Per-interface sysctl keys name the interface as the runtime does (`keys_name`, its
    /// `CNI_IFNAME`), so they are set while it has that name: before a rename away from it
    /// (ADD), after a rename back to it (DEL).
    fn change(
        &self,
        netns: &Netns,
        netlink: &mut Netlink,
        link: &Link,
        keys_name: &str,
        mode: Mode,
    ) -> Result<()> {
        let mut steps = Steps::new(mode);
        let back_to_keys_name = self.name.as_deref() == Some(keys_name) && link.name != keys_name;
        let mut sysctls = self.sysctls.clone();
        if back_to_keys_name && !steps.run(|| self.rename(netlink, link))? {
            // Still under its tuned name (another link took the runtime's): its own sysctls
            // are found under the name it has, and the other link's are not ours to write.
            sysctls = self.keys_renamed(keys_name, &link.name).sysctls;
        }
        // The kernel keeps an interface's IPv6 state, sysctls included, only while its MTU is
        // 1280 or more: it drops it below and makes it anew (with default values) above. So
        // the sysctls are written while the MTU is the larger of the old and the new one: a
        // growing MTU is set before them, a shrinking one after.
        let (grow, shrink) = match self.mtu {
            Some(mtu) if mtu > link.mtu => (Some(mtu), None),
            mtu => (None, mtu),
        };
        if let Some(mtu) = grow {
            steps.run(|| Ok(netlink.set_mtu(link.index, mtu)?))?;
        }
        steps.run(|| {
            netns.run(|| {
                let mut each = Steps::new(mode);
                for (key, value) in &sysctls {
                    each.run(|| match sysctl::set(key, value) {
                        Err(SysctlError::Missing(_)) if mode == Mode::Restore => Ok(()),
                        written => Ok(written?),
                    })?;
                }
                each.finish()
            })?
        })?;
        if let Some(mac) = &self.mac {
            let mac: MacAddr = mac.parse().map_err(|e| ProtocolError::config("mac", e))?;
            steps.run(|| Ok(netlink.set_mac(link.index, mac)?))?;
        }
        if let Some(mtu) = shrink {
            steps.run(|| Ok(netlink.set_mtu(link.index, mtu)?))?;
        }
        if let Some(promisc) = self.promisc {
            steps.run(|| Ok(netlink.set_promisc(link.index, promisc)?))?;
        }
        if let Some(allmulti) = self.allmulti {
            steps.run(|| Ok(netlink.set_allmulti(link.index, allmulti)?))?;
        }
        if let Some(txqlen) = self.txqlen {
            steps.run(|| Ok(netlink.set_txqlen(link.index, txqlen)?))?;
        }
        if !back_to_keys_name {
            steps.run(|| self.rename(netlink, link))?;
        }
        if let Some(up) = self.up {
            steps.run(|| Ok(netlink.set_link_up(link.index, up)?))?;
        }
        steps.finish()
    }

    /// Gives `link` the name these settings have, if they have one it lacks.
    fn rename(&self, netlink: &mut Netlink, link: &Link) -> Result<()> {
        if let Some(name) = &self.name {
            let fresh = netlink
                .link_by_index(link.index)?
                .unwrap_or_else(|| link.clone());
            if fresh.name != *name {
                netlink.rename(&fresh, name)?;
            }
        }
        Ok(())
    }

    /// CHECK: what differs between these settings (sysctl keys naming the interface as
    /// `keys_name`) and the link now, under whatever name it has, if anything.
    pub fn differences(&self, netns: &Netns, link: &Link, keys_name: &str) -> Result<Vec<String>> {
        let wanted = self.keys_renamed(keys_name, &link.name);
        let now = Settings::current(netns, link, &wanted)?;
        let mut differ = Vec::new();
        if let (Some(want), Some(have)) = (&self.mac, &now.mac) {
            if !want.eq_ignore_ascii_case(have) {
                differ.push(format!("mac is {have}, not {want}"));
            }
        }
        for (what, want, have) in [
            ("mtu", self.mtu, now.mtu),
            ("txqlen", self.txqlen, now.txqlen),
        ] {
            if want.is_some() && want != have {
                differ.push(format!("{what} is {have:?}, not {want:?}"));
            }
        }
        for (what, want, have) in [
            ("promisc", self.promisc, now.promisc),
            ("allmulti", self.allmulti, now.allmulti),
        ] {
            if want.is_some() && want != have {
                differ.push(format!("{what} is {have:?}, not {want:?}"));
            }
        }
        for (key, want) in &wanted.sysctls {
            if now.sysctls.get(key) != Some(want) {
                differ.push(format!("{key} is {:?}, not {want}", now.sysctls.get(key)));
            }
        }
        Ok(differ)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Apply,
    Restore,
}

/// The steps of one change: applying stops at the first failure; restoring goes on and
/// keeps the first failure to report at the end.
struct Steps {
    mode: Mode,
    first_failure: Option<Error>,
}

impl Steps {
    fn new(mode: Mode) -> Self {
        Steps {
            mode,
            first_failure: None,
        }
    }

    /// Runs one step; whether it succeeded, unless it failed while applying (then the error).
    fn run(&mut self, step: impl FnOnce() -> Result<()>) -> Result<bool> {
        match step() {
            Ok(()) => Ok(true),
            Err(e) if self.mode == Mode::Restore => {
                self.first_failure.get_or_insert(e);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn finish(self) -> Result<()> {
        self.first_failure.map_or(Ok(()), Err)
    }
}

/// What ADD changed, for DEL: the originals and the name the link has now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The link's name after ADD (differs from the attachment's ifname when renamed).
    pub current_name: String,
    pub original: Settings,
}

/// DEL writes what a record says into the container's sysctls and link: a record naming a
/// sysctl [`sysctl_key`] would not have made (one outside `/proc/sys/net`, which writes the
/// host's), or a name or MAC no link has, is refused whole.
impl netlib::state::Record for Record {
    fn check(&self) -> std::result::Result<(), String> {
        validate_ifname(&self.current_name).map_err(|e| format!("current_name: {e}"))?;
        if let Some(name) = &self.original.name {
            validate_ifname(name).map_err(|e| format!("name: {e}"))?;
        }
        if let Some(mac) = &self.original.mac {
            mac.parse::<MacAddr>()
                .map_err(|e| format!("mac {mac:?}: {e}"))?;
        }
        for key in self.original.sysctls.keys() {
            // Recorded keys are dotted with IFNAME replaced, so a key the check leaves as
            // it was is one ADD could have recorded.
            if sysctl_key(key, "IFNAME").ok().as_deref() != Some(key.as_str()) {
                return Err(format!("sysctl {key} is not a net.* sysctl"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{sysctl_key, Record, Settings};
    use netlib::state::Record as _;

    #[test]
    fn only_net_sysctls_pass() {
        assert_eq!(
            sysctl_key("net.ipv4.conf.IFNAME.arp_filter", "eth0").expect("ok"),
            "net.ipv4.conf.eth0.arp_filter"
        );
        assert_eq!(
            sysctl_key("net/core/somaxconn", "eth0").expect("ok"),
            "net.core.somaxconn"
        );
        assert!(sysctl_key("kernel.panic", "eth0").is_err());
        assert!(sysctl_key("net..ipv4", "eth0").is_err());
        assert!(sysctl_key("net/../../kernel/panic", "eth0").is_err());
        assert!(sysctl_key("net", "eth0").is_err());
    }

    #[test]
    fn a_record_restores_only_net_sysctls_of_real_names() {
        let record = |key: &str| Record {
            current_name: "eth0".into(),
            original: Settings {
                sysctls: [(key.to_string(), "1".to_string())].into(),
                ..Settings::default()
            },
        };
        for good in ["net.ipv4.conf.eth0.arp_filter", "net.core.somaxconn"] {
            assert_eq!(record(good).check(), Ok(()), "{good}");
        }
        for bad in [
            "kernel.hostname",
            "net",
            "net..core",
            "net.core/somaxconn",
            "net.ipv4/../../kernel.hostname",
            "",
        ] {
            let refused = record(bad).check().expect_err(bad);
            assert!(refused.contains("not a net.* sysctl"), "{bad}: {refused}");
        }
        let renamed = Record {
            current_name: "a/b".into(),
            ..record("net.core.somaxconn")
        };
        assert!(renamed.check().is_err());
    }
}
