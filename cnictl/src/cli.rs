//! cnictl's command line. Apart from `main` so that `xtask` generates the man page and
//! shell completions from these very definitions.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Attach network namespaces to CNI networks, as a container runtime would.
#[derive(Parser)]
#[command(
    name = "cnictl",
    version,
    after_help = "Examples:\n  \
    cnictl demo                                     # the whole thing, in a sandbox\n  \
    cnictl netns add box1\n  \
    cnictl add mynet box1 --port 8080:80            # mynet from /etc/cni/net.d\n  \
    cnictl ls\n  \
    cnictl del mynet box1 && cnictl netns del box1\n  \
    cnictl run --net mynet -- sh                    # a shell in a fresh, attached namespace"
)]
pub struct Cli {
    /// Where network configs (.conf, .conflist, .json) are read from.
    #[arg(
        long,
        global = true,
        default_value = "/etc/cni/net.d",
        env = "NETCONFPATH"
    )]
    pub conf_dir: PathBuf,
    /// Where plugins are looked for (colon-separated); defaults to CNI_PATH, then /opt/cni/bin.
    #[arg(long, global = true)]
    pub path: Option<String>,
    /// Where results are cached (libcni's layout).
    #[arg(long, global = true, default_value = "/var/lib/cni")]
    pub cache_dir: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Args, Clone, Default)]
pub struct RuntimeArgs {
    /// Publish a port: HOST:CONTAINER[/tcp|udp|sctp] (capability portMappings).
    #[arg(long = "port", value_name = "HOST:CONTAINER[/PROTO]")]
    pub ports: Vec<String>,
    /// Ask for an address (capability ips).
    #[arg(long = "ip")]
    pub ips: Vec<String>,
    /// Set the container interface's MAC (capability mac).
    #[arg(long)]
    pub mac: Option<String>,
    /// Cap traffic both ways, in bits per second (capability bandwidth).
    #[arg(long, value_name = "BITS_PER_SECOND")]
    pub bandwidth: Option<u64>,
    /// Extra CNI_ARGS, K=V (repeatable).
    #[arg(long = "arg", value_name = "K=V")]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct Target {
    /// The network's name (from its config file).
    pub network: String,
    /// A namespace name in /run/netns, or a path to one.
    pub netns: String,
    /// The interface name inside the namespace.
    #[arg(long, default_value = "eth0")]
    pub ifname: String,
    /// The container ID; defaults to the namespace's name.
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Attach a namespace to a network (runs the plugin chain's ADD).
    Add {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Verify an attachment against its cached result.
    Check {
        #[command(flatten)]
        target: Target,
    },
    /// Detach a namespace (the chain's DEL, in reverse, with the cached result).
    Del {
        #[command(flatten)]
        target: Target,
    },
    /// Detach attachments whose namespace is gone, then run the plugins' GC.
    Gc {
        /// Only this network (default: all).
        network: Option<String>,
    },
    /// Ask every plugin whether it can attach now (spec 1.1 STATUS).
    Status { network: Option<String> },
    /// List attachments from the result cache.
    Ls,
    /// Create, delete or list named network namespaces.
    Netns {
        #[command(subcommand)]
        action: NetnsCmd,
    },
    /// Run a command in a fresh namespace attached to networks, then clean everything up.
    Run {
        /// A network to attach (repeatable).
        #[arg(long = "net", required = true)]
        networks: Vec<String>,
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Show, step by step, two containers on a bridge with a published port, in a sandbox
    /// that never touches this machine's own network; then remove everything.
    Demo,
    /// (Used by the demo) answer HTTP requests with a fixed body.
    #[command(hide = true)]
    ServeHttp {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        body: String,
    },
}

#[derive(Subcommand)]
pub enum NetnsCmd {
    /// Create a named namespace (in /run/netns, as `ip netns add`).
    Add { name: String },
    /// Delete a named namespace.
    Del { name: String },
    /// List the named namespaces.
    Ls,
}
