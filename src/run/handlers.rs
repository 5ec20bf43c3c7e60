//! Handlers: flushing the notified ones in definition order (at the end of a
//! play or at `meta: flush_handlers`), including those a `listen` topic
//! answers; a handler can notify later ones.

use super::*;

impl Engine {
    pub(super) fn flush_handlers<'a>(
        &'a self,
        pc: &'a PlayCtx<'a>,
        st: &'a mut HostState,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(self.flush_handlers_inner(pc, st))
    }

    pub(super) async fn flush_handlers_inner(&self, pc: &PlayCtx<'_>, st: &mut HostState) {
        loop {
            if st.notified.is_empty() || st.failed {
                return;
            }
            let notified = std::mem::take(&mut st.notified);
            let mut ran_any = false;
            for (i, h) in pc.play.handlers.iter().enumerate() {
                let hit = h.name.as_deref().is_some_and(|n| notified.contains(n))
                    || h.listen.iter().any(|l| notified.contains(l));
                if hit {
                    ran_any = true;
                    let outer = std::mem::replace(&mut st.in_handlers, true);
                    self.run_task(pc, h, st).await;
                    st.in_handlers = outer;
                    if st.failed {
                        // Pending handlers: what this and the later handlers answer
                        // stays pending (saved for the next apply).
                        for later in &pc.play.handlers[i..] {
                            for n in later.name.iter().chain(later.listen.iter()) {
                                if notified.contains(n) {
                                    st.notified.insert(n.clone());
                                }
                            }
                        }
                        return;
                    }
                }
            }
            if !ran_any {
                return;
            }
        }
    }
}
