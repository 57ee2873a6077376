//! The work items of a call, shared between the calling thread and pool workers.
//!
//! Handing a call to the pool puts the caller to sleep until the pool is done, and waking it
//! again, like waking a sleeping worker, costs about as much as a call of a few tens of
//! microseconds. Here the caller takes items itself and workers that start in time take the
//! others. The caller never waits for a worker to start, only for one to finish what it began.

use std::any::Any;
use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;

/// Checks on the helpers before the caller sleeps (about 6 us on Zen 4): their last items are
/// often done sooner than a sleeping thread would wake (4 times as many measured no faster).
const SPINS_BEFORE_SLEEP: u32 = 1 << 8;

/// Items handed out in order to whoever asks first, in runs that shrink as the items run
/// out (guided scheduling): many short items cost few claims, whose counter every
/// participant writes, and the last runs are short enough to end together.
pub(crate) struct Claims {
    next: AtomicUsize,
    items: usize,
    participants: usize,
}

impl Claims {
    fn claim(&self) -> Option<Range<usize>> {
        let mut next = self.next.load(Ordering::SeqCst);
        loop {
            if next >= self.items {
                return None;
            }
            let len = ((self.items - next) / (2 * self.participants)).max(1);
            match self.next.compare_exchange_weak(next, next + len, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Some(next..next + len),
                Err(actual) => next = actual,
            }
        }
    }

    /// Runs `f` on the items of `first`, then on every item left to claim.
    pub(crate) fn run_from(&self, first: Range<usize>, mut f: impl FnMut(usize)) {
        let mut run = Some(first);
        while let Some(items) = run {
            items.for_each(&mut f);
            run = self.claim();
        }
    }
}

/// A participant: given the first items it claimed, it runs those and every item it can
/// still claim (see [`Claims::run_from`]).
type Participant<'a> = dyn Fn(Range<usize>, &Claims) + Sync + 'a;

struct Job {
    claims: Claims,
    /// Helpers inside [`Job::participate`].
    active: AtomicUsize,
    caller: Thread,
    /// The caller's participant, valid while the caller is in [`share`] (see there).
    participant: *const Participant<'static>,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `participant` is `Sync` and only called while the caller keeps it alive; the other
// fields are thread-safe.
unsafe impl Send for Job {}
unsafe impl Sync for Job {}

impl Job {
    /// Runs the participant from `first`, keeping its panic for the caller.
    fn run(&self, first: Range<usize>, participant: &Participant<'_>) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| participant(first, &self.claims))) {
            self.panic.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get_or_insert(panic);
        }
    }

    /// A helper's part: counted active before it claims, so the caller, which closes the
    /// claims before it looks, either waits for it or has closed them first; in the latter
    /// case this claims nothing and never touches the participant.
    fn participate(&self) {
        self.active.fetch_add(1, Ordering::SeqCst);
        if let Some(first) = self.claims.claim() {
            // SAFETY: the caller is still in `share`, waiting for this helper (above), so the
            // participant is alive.
            let participant = unsafe { &*self.participant };
            self.run(first, participant);
        }
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.caller.unpark();
        }
    }

    fn helpers_done(&self) -> bool {
        self.active.load(Ordering::SeqCst) == 0
    }
}

/// Runs items `0..items` through `participant` on this thread and on up to `helpers` pool
/// workers; returns once every item has run, re-raising the first panic of any of them.
pub(crate) fn share(items: usize, helpers: usize, participant: &Participant<'_>) {
    // SAFETY: only the lifetime is erased; helpers call the participant only while this
    // function waits for them (`Job::participate`).
    let erased = unsafe { std::mem::transmute::<*const Participant<'_>, *const Participant<'static>>(participant) };
    let job = Arc::new(Job {
        claims: Claims { next: AtomicUsize::new(0), items, participants: helpers + 1 },
        active: AtomicUsize::new(0),
        caller: std::thread::current(),
        participant: erased,
        panic: Mutex::new(None),
    });
    for _ in 0..helpers {
        let job = Arc::clone(&job);
        rayon::spawn(move || job.participate());
    }
    if let Some(first) = job.claims.claim() {
        job.run(first, participant);
    }
    // No item is claimed from here on, even when a panic stopped this thread's part early: a
    // helper starting later must find none, since the participant is about to go.
    job.claims.next.fetch_max(items, Ordering::SeqCst);
    // Wait for the helpers still running theirs.
    for _ in 0..SPINS_BEFORE_SLEEP {
        if job.helpers_done() {
            break;
        }
        std::hint::spin_loop();
    }
    while !job.helpers_done() {
        std::thread::park();
    }
    let panic = job.panic.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    if let Some(panic) = panic {
        resume_unwind(panic);
    }
}

#[cfg(test)]
mod tests {
    use super::share;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_item_runs_once_whoever_takes_it() {
        for (items, helpers) in [(1, 0), (1, 3), (2, 1), (7, 1), (100, 3)] {
            let runs: Vec<AtomicUsize> = (0..items).map(|_| AtomicUsize::new(0)).collect();
            share(items, helpers, &|first, claims| {
                claims.run_from(first, |item| {
                    runs[item].fetch_add(1, Ordering::Relaxed);
                    // Long enough for a helper to take some.
                    std::thread::sleep(std::time::Duration::from_micros(50));
                })
            });
            assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1), "{items} items, {helpers} helpers");
        }
    }

    #[test]
    fn a_panic_in_any_item_reaches_the_caller_after_the_others_ran() {
        let ran = AtomicUsize::new(0);
        let result = std::panic::catch_unwind(|| {
            share(8, 1, &|first, claims| {
                claims.run_from(first, |item| {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                    ran.fetch_add(1, Ordering::Relaxed);
                    assert_ne!(item, 5, "item 5 fails");
                })
            })
        });
        assert!(result.is_err());
        // Items up to the failing one ran; the participant that failed took no more.
        assert!(ran.load(Ordering::Relaxed) >= 6);
        // A helper that starts only now finds nothing to claim (nor a participant to call).
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
