//! One shutdown signal shared by every task: the refresh loop, both servers and each ADS
//! stream (which would otherwise keep graceful shutdown waiting forever).

use tokio::sync::watch;

pub struct Trigger(watch::Sender<bool>);

#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Resolves once shutdown was fired, or when the trigger is gone (nobody can fire it,
    /// so nothing is left to wait for).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|fired| *fired).await;
    }

    /// A shutdown future that owns its receiver, for APIs that take `impl Future + 'static`.
    pub async fn wait_owned(mut self) {
        self.wait().await
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_all_clones_and_ends_when_trigger_dropped() {
        let (trigger, shutdown) = channel();
        let mut a = shutdown.clone();
        let b = shutdown.wait_owned();
        trigger.fire();
        a.wait().await;
        b.await;

        let (trigger, mut shutdown) = channel();
        drop(trigger);
        shutdown.wait().await;
    }
}
