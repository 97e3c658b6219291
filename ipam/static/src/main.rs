//! static IPAM: exactly the addresses the config or the runtime names; no state.

use netlib::cni::{AttachmentKey, CniResult, ProtocolError};
use netlib::ipam::static_ipam::Static;
use netlib::skel::{self, Attachment, Plugin, Request};
use netlib::Result;

struct StaticPlugin;

impl Plugin for StaticPlugin {
    fn about(&self) -> &'static str {
        "CNI static IPAM plugin (ferrocni)"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        Ok(Static::load(request, Some(&attachment.args))?.result())
    }

    /// Nothing was reserved, but a config that could never have worked is still reported.
    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        Static::load(request, Some(&attachment.args)).map(drop)
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let previous = request
            .prev_result()?
            .ok_or(ProtocolError::MissingPrevResult)?;
        Static::load(request, Some(&attachment.args))?.check(&previous)
    }

    /// Nothing to collect: static keeps no state between calls.
    fn gc(&self, _request: &Request, _valid: &[AttachmentKey]) -> Result<()> {
        Ok(())
    }

    /// Always available: it allocates nothing that could run out.
    fn status(&self, _request: &Request) -> Result<()> {
        Ok(())
    }
}

fn main() {
    skel::run(&StaticPlugin)
}
