//! Undo on failure: every step of an ADD that changes something registers how to take it
//! back; if the ADD fails (or panics) before [`Undo::commit`], the steps run in reverse, so
//! no veth, rule or reservation outlives a failed ADD.

type Step<'a> = Box<dyn FnOnce() -> crate::Result<()> + 'a>;

#[derive(Default)]
pub struct Undo<'a> {
    steps: Vec<(&'static str, Step<'a>)>,
}

impl<'a> Undo<'a> {
    pub fn new() -> Self {
        Undo { steps: Vec::new() }
    }

    /// Registers how to take back the step just done.
    pub fn push(&mut self, what: &'static str, step: impl FnOnce() -> crate::Result<()> + 'a) {
        self.steps.push((what, Box::new(step)));
    }

    /// The ADD succeeded: keep everything.
    pub fn commit(mut self) {
        self.steps.clear();
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        while let Some((what, step)) = self.steps.pop() {
            // The ADD's own error is what the runtime sees; a failed undo is logged.
            if let Err(e) = step() {
                eprintln!("ferrocni: undoing {what} failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Undo;
    use std::cell::RefCell;

    #[test]
    fn runs_in_reverse_unless_committed() {
        let log = RefCell::new(Vec::new());
        {
            let mut undo = Undo::new();
            undo.push("a", || {
                log.borrow_mut().push("a");
                Ok(())
            });
            undo.push("b", || {
                log.borrow_mut().push("b");
                Ok(())
            });
        }
        assert_eq!(*log.borrow(), ["b", "a"]);
        let mut undo = Undo::new();
        undo.push("c", || {
            log.borrow_mut().push("c");
            Ok(())
        });
        undo.commit();
        assert_eq!(log.borrow().len(), 2);
    }
}
