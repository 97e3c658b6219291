//! Results: one version-less model, read from and written to every spec version's layout
//! the way libcni converts them.

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::IpAddr;

use super::error::ProtocolError;
use super::json;
use super::version::{ResultLayout, Version};

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Interface {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for container-side interfaces, empty for host-side ones.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    #[serde(rename = "socketPath", skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    #[serde(rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Index into `interfaces`; IPAM results leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// The address with its prefix length (host bits set), e.g. `10.1.2.3/24`.
    pub address: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

impl Route {
    /// A route with only a destination and an optional gateway, the common case.
    pub fn via(dst: IpNetwork, gw: Option<IpAddr>) -> Self {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Dns {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

/// A result in no particular version; [`CniResult::to_json`] picks the layout. Its serde
/// form is version-less too: for our own processes (the dhcp daemon and its plugin), never
/// for a runtime.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

/// The 0.3.0-1.1.0 layout. Parsing 0.3.x/0.4.0 through it drops the per-IP `version`,
/// which carries nothing the address does not.
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct ListWire {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    /// Always printed, even empty: libcni's Go struct cannot omit it and tools diff on it.
    dns: Dns,
}

#[derive(Serialize)]
struct VersionedIp<'a> {
    version: &'static str,
    #[serde(flatten)]
    ip: &'a IpConfig,
}

#[derive(Serialize)]
struct VersionedWire<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<VersionedIp<'a>>,
    #[serde(skip_serializing_if = "<[Route]>::is_empty")]
    routes: &'a [Route],
    dns: &'a Dns,
}

#[derive(Serialize, Deserialize)]
struct LegacyIp {
    ip: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<LegacyRoute>,
}

#[derive(Serialize, Deserialize)]
struct LegacyRoute {
    dst: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gw: Option<IpAddr>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct LegacyWire {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip4: Option<LegacyIp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip6: Option<LegacyIp>,
    dns: Dns,
}

fn ip_version(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() {
        "4"
    } else {
        "6"
    }
}

impl CniResult {
    /// Reads a result of any version. A result without `cniVersion` takes `default_version`
    /// (libcni gives a prevResult the config's version).
    pub fn from_json(value: Value, default_version: Version) -> Result<Self, ProtocolError> {
        let decode = |source| ProtocolError::Decode {
            what: "result",
            error: source,
        };
        let stated = value
            .get("cniVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        let version = match stated.as_deref() {
            None | Some("") => default_version,
            Some(text) => {
                Version::parse(text).ok_or_else(|| ProtocolError::IncompatibleVersion {
                    config: text.to_string(),
                    supported: Version::ALL.to_vec(),
                })?
            }
        };
        match version.result_layout() {
            ResultLayout::Legacy => {
                let wire: LegacyWire = json::from_value(value).map_err(decode)?;
                Ok(Self::from_legacy(wire))
            }
            ResultLayout::Versioned | ResultLayout::Current => {
                let wire: ListWire = json::from_value(value).map_err(decode)?;
                Ok(CniResult {
                    interfaces: wire.interfaces,
                    ips: wire.ips,
                    routes: wire.routes,
                    dns: wire.dns,
                })
            }
        }
    }

    fn from_legacy(wire: LegacyWire) -> Self {
        let mut result = CniResult {
            dns: wire.dns,
            ..CniResult::default()
        };
        for family in [wire.ip4, wire.ip6].into_iter().flatten() {
            result.ips.push(IpConfig {
                interface: None,
                address: family.ip,
                gateway: family.gateway,
            });
            result
                .routes
                .extend(family.routes.into_iter().map(|r| Route::via(r.dst, r.gw)));
        }
        result
    }

    /// Writes the result in `version`'s layout. Going down to 0.2.0 keeps the first IP of
    /// each family and fails when there is none, as libcni does.
    pub fn to_json(&self, version: Version) -> Result<Value, ProtocolError> {
        let encoded = match version.result_layout() {
            ResultLayout::Current => serde_json::to_value(ListWire {
                cni_version: version.as_str().to_string(),
                interfaces: self.interfaces.clone(),
                ips: self.ips.clone(),
                routes: self.routes.clone(),
                dns: self.dns.clone(),
            }),
            ResultLayout::Versioned => serde_json::to_value(VersionedWire {
                cni_version: version.as_str(),
                interfaces: self
                    .interfaces
                    .iter()
                    .map(|i| Interface {
                        mtu: None,
                        socket_path: String::new(),
                        pci_id: String::new(),
                        ..i.clone()
                    })
                    .collect(),
                ips: self
                    .ips
                    .iter()
                    .map(|ip| VersionedIp {
                        version: ip_version(ip.address.ip()),
                        ip,
                    })
                    .collect(),
                routes: &self.routes,
                dns: &self.dns,
            }),
            ResultLayout::Legacy => serde_json::to_value(self.to_legacy(version)?),
        };
        // Serializing plain structs of strings and numbers cannot fail.
        encoded.map_err(|source| ProtocolError::Decode {
            what: "result",
            error: source.into(),
        })
    }

    fn to_legacy(&self, version: Version) -> Result<LegacyWire, ProtocolError> {
        let first = |v4: bool| {
            self.ips
                .iter()
                .find(|ip| ip.address.is_ipv4() == v4)
                .map(|ip| LegacyIp {
                    ip: ip.address,
                    gateway: ip.gateway,
                    routes: self
                        .routes
                        .iter()
                        .filter(|r| r.dst.is_ipv4() == v4)
                        .map(|r| LegacyRoute {
                            dst: r.dst,
                            gw: r.gw,
                        })
                        .collect(),
                })
        };
        let (ip4, ip6) = (first(true), first(false));
        if ip4.is_none() && ip6.is_none() {
            return Err(ProtocolError::Conversion {
                version,
                reason: "no valid IP addresses",
            });
        }
        Ok(LegacyWire {
            cni_version: version.as_str().to_string(),
            ip4,
            ip6,
            dns: self.dns.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> CniResult {
        CniResult::from_json(
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [
                    {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                    {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "mtu": 1400,
                     "sandbox": "/run/netns/x", "pciID": "0000:00:01.0"}
                ],
                "ips": [
                    {"interface": 1, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
                    {"interface": 1, "address": "10.1.1.5/24"},
                    {"interface": 1, "address": "fd00::5/64", "gateway": "fd00::1"}
                ],
                "routes": [
                    {"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 1300, "table": 100, "scope": 0},
                    {"dst": "::/0"}
                ],
                "dns": {"nameservers": ["10.1.0.1"], "search": ["cluster.local"]}
            }),
            Version::V1_1_0,
        )
        .expect("parses")
    }

    #[test]
    fn current_round_trip_is_lossless() {
        let result = sample();
        for v in [Version::V1_0_0, Version::V1_1_0] {
            let back = CniResult::from_json(result.to_json(v).expect("prints"), v).expect("parses");
            assert_eq!(back, result);
        }
    }

    #[test]
    fn down_to_040_adds_version_and_drops_1x_interface_fields() {
        let printed = sample().to_json(Version::V0_4_0).expect("prints");
        assert_eq!(printed["cniVersion"], "0.4.0");
        assert_eq!(printed["ips"][0]["version"], "4");
        assert_eq!(printed["ips"][2]["version"], "6");
        assert_eq!(printed["ips"][0]["interface"], 1);
        assert!(printed["interfaces"][1].get("mtu").is_none());
        assert!(printed["interfaces"][1].get("pciID").is_none());
        assert_eq!(printed["routes"][0]["table"], 100);
        let back = CniResult::from_json(printed, Version::V0_4_0).expect("parses");
        assert_eq!(back.ips, sample().ips);
    }

    #[test]
    fn down_to_020_keeps_first_ip_per_family_and_buckets_routes() {
        let printed = sample().to_json(Version::V0_2_0).expect("prints");
        assert_eq!(
            printed,
            json!({
                "cniVersion": "0.2.0",
                "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1",
                        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]},
                "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0"}]},
                "dns": {"nameservers": ["10.1.0.1"], "search": ["cluster.local"]}
            })
        );
        let up = CniResult::from_json(printed, Version::V0_2_0).expect("parses");
        assert_eq!(up.ips.len(), 2);
        assert_eq!(up.routes.len(), 2);
        assert!(up.interfaces.is_empty());
        let reprinted = up.to_json(Version::V1_0_0).expect("prints");
        assert_eq!(reprinted["ips"][1]["address"], "fd00::5/64");
    }

    #[test]
    fn legacy_needs_an_address() {
        let err = CniResult::default()
            .to_json(Version::V0_1_0)
            .expect_err("no IPs");
        assert!(err.to_string().contains("no valid IP addresses"));
    }

    #[test]
    fn missing_version_takes_the_default_and_empty_dns_is_printed() {
        let result = CniResult::from_json(
            json!({"ips": [{"version": "4", "address": "10.0.0.2/24"}]}),
            Version::V0_4_0,
        )
        .expect("parses");
        let printed = result.to_json(Version::V1_0_0).expect("prints");
        assert_eq!(
            printed,
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}], "dns": {}})
        );
    }

    #[test]
    fn unknown_result_version_is_refused() {
        assert!(CniResult::from_json(json!({"cniVersion": "7.0.0"}), Version::V1_0_0).is_err());
    }
}
