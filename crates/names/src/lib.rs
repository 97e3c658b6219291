//! Name discovery's shared model, the layer above `netlib` that the `dnsname` plugin, the
//! `ferrocni-dns` server and the overlay agent agree on: what a container registers
//! ([`Registration`]: its name, aliases and addresses on one network), the names other
//! nodes published ([`RemoteFile`]), how a network's server runs ([`ServerConfig`]), the
//! network's runtime directory ([`dir`]) and the control protocol ([`control`]).
//!
//! It holds no DNS code: the plugin links this crate and stays small; the wire format is
//! the server's business alone.

pub mod control;
pub mod dir;
pub mod record;

pub use dir::{NetworkDir, OpenDir, DEFAULT_ROOT, SERVER_BINARY};
pub use record::{dns_name, Entry, Registration, RemoteEntry, RemoteFile, ServerConfig};
