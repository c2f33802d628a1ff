//! Envoy's filter configuration as the module sees it: while `config_new`
//! runs (metrics, the scheduler), and during a scheduled event on the main
//! thread (the gauges).
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex, PoisonError};

use super::{
    envoy_dynamic_module_callback_http_filter_config_define_counter,
    envoy_dynamic_module_callback_http_filter_config_define_gauge,
    envoy_dynamic_module_callback_http_filter_config_scheduler_commit,
    envoy_dynamic_module_callback_http_filter_config_scheduler_delete,
    envoy_dynamic_module_callback_http_filter_config_scheduler_new,
    envoy_dynamic_module_callback_http_filter_config_set_gauge, ModuleBuffer, METRICS_SUCCESS,
};
use crate::filter::DefineMetrics;
use crate::gauges::{Notify, SetGauges};

/// Envoy's filter configuration while `config_new` runs: metrics are
/// defined only then.
pub struct FilterConfigHandle {
    pub(super) raw: NonNull<c_void>,
}

impl DefineMetrics for FilterConfigHandle {
    fn define_gauge(&mut self, name: &str, label: &str) -> Option<usize> {
        let mut id = 0usize;
        let labels = [ModuleBuffer::of(label.as_bytes())];
        // SAFETY: `raw` is the live configuration of `config_new`; the name
        // and the label array outlive the call; `id` is valid for writes.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_gauge(
                self.raw.as_ptr(),
                ModuleBuffer::of(name.as_bytes()),
                labels.as_ptr(),
                labels.len(),
                &mut id,
            )
        };
        (result == METRICS_SUCCESS).then_some(id)
    }

    fn scheduler(&mut self) -> Option<Arc<dyn Notify>> {
        // SAFETY: `raw` is the live configuration of `config_new`.
        let raw = unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.raw.as_ptr())
        };
        let raw = NonNull::new(raw)?;
        Some(Arc::new(ConfigScheduler {
            raw: Mutex::new(Some(SchedulerPtr(raw))),
        }))
    }

    fn define_counter(&mut self, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: `raw` is the live configuration of `config_new`; the name
        // outlives the call; no labels; `id` is valid for writes.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.raw.as_ptr(),
                ModuleBuffer::of(name.as_bytes()),
                ptr::null(),
                0,
                &mut id,
            )
        };
        (result == METRICS_SUCCESS).then_some(id)
    }
}

/// Envoy's scheduler of one filter configuration.
struct SchedulerPtr(NonNull<c_void>);

// SAFETY: Envoy's configuration scheduler may be committed from any thread;
// it is deleted once, under the same lock as every commit.
unsafe impl Send for SchedulerPtr {}

/// Runs `envoy_dynamic_module_on_http_filter_config_scheduled` on Envoy's
/// main thread when committed from the xDS thread.
struct ConfigScheduler {
    raw: Mutex<Option<SchedulerPtr>>,
}

impl Notify for ConfigScheduler {
    fn notify(&self) {
        let raw = self.raw.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(SchedulerPtr(raw)) = raw.as_ref() {
            // SAFETY: not yet deleted (the lock is held, and `close` empties
            // it before deleting).
            unsafe {
                envoy_dynamic_module_callback_http_filter_config_scheduler_commit(raw.as_ptr(), 0)
            }
        }
    }

    fn close(&self) {
        let taken = self
            .raw
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(SchedulerPtr(raw)) = taken {
            // SAFETY: from `scheduler_new`, deleted once: it left the lock.
            unsafe {
                envoy_dynamic_module_callback_http_filter_config_scheduler_delete(raw.as_ptr())
            }
        }
    }
}

impl Drop for ConfigScheduler {
    fn drop(&mut self) {
        self.close();
    }
}

/// Envoy's filter configuration during a scheduled event (main thread).
pub struct ConfigGauges {
    pub(super) raw: NonNull<c_void>,
}

impl SetGauges for ConfigGauges {
    fn set_gauge(&mut self, id: usize, label: &str, value: u64) -> bool {
        let labels = [ModuleBuffer::of(label.as_bytes())];
        // SAFETY: `raw` is the live configuration of this event; the label
        // array outlives the call.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_set_gauge(
                self.raw.as_ptr(),
                id,
                labels.as_ptr(),
                labels.len(),
                value,
            )
        };
        result == METRICS_SUCCESS
    }
}
