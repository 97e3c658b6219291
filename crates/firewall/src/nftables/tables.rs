//! The tables each feature keeps, declared once per table (idempotently, with `nft -f`) with
//! the rules of their base chains: which maps exist and what the base chains look up in them.

use kernel::netlink::nftables::Family;

pub(super) struct Scheme {
    pub(super) family: Family,
    pub(super) table: &'static str,
    /// The table, maps and base chains, declared idempotently.
    pub(super) declarations: &'static str,
    /// The rules of each base chain, flushed and refilled in the same transaction as the
    /// declarations, so concurrent plugins never see them empty or doubled.
    pub(super) rules: &'static [(&'static str, &'static [&'static str])],
    /// The maps whose keys belong to one attachment only (host ports): ADD then fails on a
    /// taken key instead of taking it over.
    pub(super) exclusive: &'static [&'static str],
}

pub(super) const MASQUERADE: Scheme = Scheme {
    family: Family::Inet,
    table: "ferrocni",
    declarations: "add table inet ferrocni\n\
           add map inet ferrocni manifests { type mark . mark : mark; }\n\
           add map inet ferrocni snat4 { type ipv4_addr : mark; }\n\
           add map inet ferrocni snat6 { type ipv6_addr : mark; }\n\
           add map inet ferrocni local4 { type ipv4_addr . ipv4_addr : mark; flags interval; }\n\
           add map inet ferrocni local6 { type ipv6_addr . ipv6_addr : mark; flags interval; }\n\
           add chain inet ferrocni masquerading { type nat hook postrouting priority srcnat; policy accept; }\n",
    rules: &[(
        "masquerading",
        &[
            "ip saddr . ip daddr @local4 return",
            "ip6 saddr . ip6 daddr @local6 return",
            "ip daddr 224.0.0.0/4 return",
            "ip6 daddr ff00::/8 return",
            "ip saddr @snat4 masquerade",
            "ip6 saddr @snat6 masquerade",
        ],
    )],
    exclusive: &[],
};

pub(super) const SPOOFCHECK: Scheme = Scheme {
    family: Family::Bridge,
    table: "ferrocni",
    declarations: "add table bridge ferrocni\n\
           add map bridge ferrocni manifests { type mark . mark : mark; }\n\
           add map bridge ferrocni spoofing { type ifname : mark; }\n\
           add map bridge ferrocni sources { type ifname . ether_addr : mark; }\n\
           add chain bridge ferrocni source-macs { type filter hook prerouting priority -300; policy accept; }\n",
    rules: &[(
        "source-macs",
        &[
            "iifname . ether saddr @sources return",
            "iifname @spoofing drop",
        ],
    )],
    exclusive: &[],
};

/// Host ports, table `inet ferrocni_portmap`: `published` (traffic from outside) and
/// `published-local` (from the host itself) look destination address . protocol . port of
/// local traffic up: `hairpin4`/`hairpin6` (with the source) marks hairpin and localhost
/// traffic for masquerading, `dnat4`/`dnat6` hold the container's address and port, and
/// `hairpin-masq` masquerades marked packets. A mapping with an admin's conditions jumps from
/// `filtered4`/`filtered6` to its own chain, which ends in accept, and claims its key in
/// `dnat4`/`dnat6` all the same.
pub(super) const PORTMAP: Scheme = Scheme {
    family: Family::Inet,
    table: "ferrocni_portmap",
    declarations: "add table inet ferrocni_portmap\n\
           add map inet ferrocni_portmap manifests { type mark . mark : mark; }\n\
           add map inet ferrocni_portmap dnat4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; flags interval; }\n\
           add map inet ferrocni_portmap dnat6 { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; flags interval; }\n\
           add map inet ferrocni_portmap hairpin4 { type ipv4_addr . inet_proto . inet_service . ipv4_addr : mark; flags interval; }\n\
           add map inet ferrocni_portmap hairpin6 { type ipv6_addr . inet_proto . inet_service . ipv6_addr : mark; flags interval; }\n\
           add map inet ferrocni_portmap filtered4 { type ipv4_addr . inet_proto . inet_service : verdict; flags interval; }\n\
           add map inet ferrocni_portmap filtered6 { type ipv6_addr . inet_proto . inet_service : verdict; flags interval; }\n\
           add chain inet ferrocni_portmap published { type nat hook prerouting priority dstnat; policy accept; }\n\
           add chain inet ferrocni_portmap published-local { type nat hook output priority -100; policy accept; }\n\
           add chain inet ferrocni_portmap hairpin-masq { type nat hook postrouting priority srcnat; policy accept; }\n",
    rules: &[
        ("published", &PORTMAP_LOOKUPS),
        ("published-local", &PORTMAP_LOOKUPS),
        ("hairpin-masq", &["meta mark & 0x2000 == 0x2000 masquerade"]),
    ],
    exclusive: &["dnat4", "dnat6", "filtered4", "filtered6"],
};

/// The rules of `published` and `published-local`.
pub(super) const PORTMAP_LOOKUPS: [&str; 6] = [
    "fib daddr type local ip daddr . meta l4proto . th dport vmap @filtered4",
    "fib daddr type local ip6 daddr . meta l4proto . th dport vmap @filtered6",
    "fib daddr type local ip daddr . meta l4proto . th dport . ip saddr @hairpin4 meta mark set meta mark | 0x2000",
    "fib daddr type local ip6 daddr . meta l4proto . th dport . ip6 saddr @hairpin6 meta mark set meta mark | 0x2000",
    "fib daddr type local meta l4proto { tcp, udp, sctp } dnat ip to ip daddr . meta l4proto . th dport map @dnat4",
    "fib daddr type local meta l4proto { tcp, udp, sctp } dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6",
];

/// The firewall plugin's table `inet ferrocni_firewall`: `forwarding` accepts what containers in
/// `allowed4`/`allowed6` send, replies to them and DNATed connections to them. Bridges in
/// `isolated` are cut off from each other first. Note that an accept here cannot override a
/// drop in another table (nftables runs every base chain on a hook), so against an iptables
/// FORWARD policy the iptables backend is the one that helps.
pub(super) const FORWARD: Scheme = Scheme {
    family: Family::Inet,
    table: "ferrocni_firewall",
    declarations: "add table inet ferrocni_firewall\n\
           add map inet ferrocni_firewall manifests { type mark . mark : mark; }\n\
           add map inet ferrocni_firewall allowed4 { type ipv4_addr : mark; }\n\
           add map inet ferrocni_firewall allowed6 { type ipv6_addr : mark; }\n\
           add set inet ferrocni_firewall isolated { type ifname; }\n\
           add map inet ferrocni_firewall isolation { type ifname : verdict; }\n\
           add chain inet ferrocni_firewall forwarding { type filter hook forward priority filter; policy accept; }\n",
    rules: &[(
        "forwarding",
        &[
            "iifname vmap @isolation",
            "ip saddr @allowed4 accept",
            "ip6 saddr @allowed6 accept",
            "ip daddr @allowed4 ct state established,related accept",
            "ip6 daddr @allowed6 ct state established,related accept",
            "ip daddr @allowed4 ct status dnat accept",
            "ip6 daddr @allowed6 ct status dnat accept",
        ],
    )],
    exclusive: &[],
};

/// The mark that asks `hairpin-masq` to masquerade (the reference's default bit 13). It is
/// this table's own: the iptables backend's `markMasqBit` has no say here.
pub(super) const MASQ_MARK: u32 = 0x2000;
