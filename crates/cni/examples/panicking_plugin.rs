//! A plugin whose ADD panics. The tests run it to prove that a bug in a plugin still answers
//! the runtime with a spec error object instead of a bare stack trace.

use cni::skel::{self, Attachment, Plugin, Request};
use cni::{CniResult, Result, ValidAttachments};

struct Panicking;

impl Plugin for Panicking {
    fn about(&self) -> &'static str {
        "a plugin that panics on ADD (test fixture)"
    }

    fn add(&self, _request: &Request, _attachment: &Attachment) -> Result<CniResult> {
        panic!("deliberate test panic")
    }

    fn del(&self, _request: &Request, _attachment: &Attachment) -> Result<()> {
        Ok(())
    }

    fn check(&self, _request: &Request, _attachment: &Attachment) -> Result<()> {
        Ok(())
    }

    fn gc(&self, _request: &Request, _valid: &ValidAttachments) -> Result<()> {
        Ok(())
    }

    fn status(&self, _request: &Request) -> Result<()> {
        Ok(())
    }
}

fn main() {
    skel::run(&Panicking)
}
