//! A tokio runtime on its own thread, so that in-process servers work from plain
//! `#[test]` functions and from inside `#[tokio::test]` alike (dropping a runtime inside
//! another runtime panics; joining a thread does not).

use std::thread::JoinHandle;

use tokio::{runtime::Handle, sync::oneshot};

use crate::error::{HarnessError, Result};

/// Owns the thread; dropping it stops the runtime and every task spawned on it.
pub(crate) struct Background {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    pub(crate) fn start(name: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(HarnessError::io(format!("build tokio runtime for {name}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            // The runtime drives spawned tasks while it waits; it is dropped on this
            // thread when the stop signal (or the sender's drop) arrives.
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .map_err(HarnessError::io(format!("spawn thread {name}")))?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Handle for `spawn` and for `enter` (needed to register std sockets with tokio).
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
