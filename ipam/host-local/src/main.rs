//! host-local IPAM: addresses from configured ranges, recorded on the node's disk in the
//! reference plugin's format.

use netlib::cni::{AttachmentKey, CniResult};
use netlib::ipam::host_local::HostLocal;
use netlib::skel::{self, Attachment, Plugin, Request};
use netlib::Result;

struct HostLocalPlugin;

impl Plugin for HostLocalPlugin {
    fn about(&self) -> &'static str {
        "CNI host-local IPAM plugin (ferrocni)"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        HostLocal::load(request, Some(&attachment.args))?
            .allocate(&attachment.container_id, &attachment.ifname)
    }

    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        HostLocal::load(request, Some(&attachment.args))?
            .release(&attachment.container_id, &attachment.ifname)
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        HostLocal::load(request, Some(&attachment.args))?
            .check(&attachment.container_id, &attachment.ifname)
    }

    fn gc(&self, request: &Request, valid: &[AttachmentKey]) -> Result<()> {
        HostLocal::load(request, None)?.gc(valid)
    }

    fn status(&self, request: &Request) -> Result<()> {
        HostLocal::load(request, None)?.status()
    }
}

fn main() {
    skel::run(&HostLocalPlugin)
}
