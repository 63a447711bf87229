//! Shared by test files that drive async code: a body on a current-thread tokio runtime under a
//! timeout, inside the testkit's thread watchdog (so a hang fails the test instead of stalling it).

use std::future::Future;
use std::time::Duration;

/// How long an async test body may run before it fails as hung.
pub const RUNTIME_WATCHDOG: Duration = Duration::from_secs(30);

/// Runs `body` on a current-thread runtime under a [`RUNTIME_WATCHDOG`] timeout, inside the thread
/// watchdog.
pub fn on_runtime<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    ringwire_testkit::watchdog(RUNTIME_WATCHDOG + Duration::from_secs(5), move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move { tokio::time::timeout(RUNTIME_WATCHDOG, body()).await.expect("hang") })
    })
}
