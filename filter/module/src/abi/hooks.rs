//! The hooks Envoy calls, by the names it resolves when it loads the module.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use super::{
    envoy_bytes, ConfigGauges, EnvoyBuffer, FilterConfigHandle, HttpFilter, CONTINUE,
    STOP_ITERATION,
};
use crate::filter::{Filter, FilterConfig, Next};
use crate::log::{guarded, log, LogLevel};

/// [`crate::ABI_VERSION`], NUL-terminated: Envoy 1.40's. Envoy warns on a
/// mismatch and promises one minor version of forward compatibility.
const ABI_VERSION_C: &std::ffi::CStr = c"v0.2.0";

// ------------------------------ Event hooks ------------------------------

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    std::panic::set_hook(Box::new(|info| {
        log(LogLevel::Critical, &format!("panic: {info}"));
    }));
    ABI_VERSION_C.as_ptr()
}

/// Returns the configuration (an `Arc<FilterConfig>` as a raw pointer), or
/// null to refuse it (Envoy then rejects the filter configuration).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guarded("config_new", ptr::null(), || {
        let Some(raw) = NonNull::new(config_envoy) else {
            return ptr::null();
        };
        // SAFETY: Envoy's buffers are valid for the duration of this hook.
        let (Some(name), Some(config)) = (unsafe { envoy_bytes(name.ptr, name.length) }, unsafe {
            envoy_bytes(config.ptr, config.length)
        }) else {
            log(LogLevel::Error, "filter configuration is not readable");
            return ptr::null();
        };
        match FilterConfig::new(&mut FilterConfigHandle { raw }, name, config) {
            Ok(config) => Arc::into_raw(Arc::new(config)).cast(),
            Err(e) => {
                log(LogLevel::Error, &e.to_string());
                ptr::null()
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guarded("config_destroy", (), || {
        if !config.is_null() {
            // SAFETY: `config` came from `Arc::into_raw` in `config_new` and
            // Envoy destroys it once.
            let config = unsafe { Arc::from_raw(config.cast::<FilterConfig>()) };
            // Streams may still hold it; Envoy's side is gone now.
            config.close();
        }
    })
}

/// A stream's filter: a `Box<Filter>` holding its own reference to the
/// configuration, so the two may be destroyed in any order.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    guarded("filter_new", ptr::null(), || {
        if config.is_null() {
            return ptr::null();
        }
        let config = config.cast::<FilterConfig>();
        // SAFETY: `config` is alive (from `config_new`, not yet destroyed):
        // take one more reference for this filter.
        let config = unsafe {
            Arc::increment_strong_count(config);
            Arc::from_raw(config)
        };
        Box::into_raw(Box::new(Filter::new(config))).cast()
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: *mut c_void) {
    guarded("filter_destroy", (), || {
        if !filter.is_null() {
            // SAFETY: `filter` came from `Box::into_raw` in `filter_new`; Envoy
            // destroys it once.
            drop(unsafe { Box::from_raw(filter.cast::<Filter>()) });
        }
    })
}

/// The module's filter and Envoy's for one hook, or `None` on a null pointer.
///
/// SAFETY (caller): `filter` must be null or the live `Box<Filter>` of
/// `filter_new`, not aliased for the hook's duration (Envoy calls one hook
/// of a stream at a time, on its worker thread).
unsafe fn stream<'a>(
    envoy: *mut c_void,
    filter: *mut c_void,
) -> Option<(HttpFilter, &'a mut Filter)> {
    let raw = NonNull::new(envoy)?;
    let filter = filter.cast::<Filter>().as_mut()?;
    Some((HttpFilter { raw }, filter))
}

fn status(next: Next) -> i32 {
    match next {
        Next::Continue => CONTINUE,
        Next::Stop => STOP_ITERATION,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: *mut c_void,
    filter: *mut c_void,
    _end_of_stream: bool,
) -> i32 {
    guarded("request_headers", CONTINUE, || {
        // SAFETY: the pointers Envoy passes to this stream's hook.
        match unsafe { stream(envoy, filter) } {
            Some((mut envoy, filter)) => status(filter.on_request_headers(&mut envoy)),
            None => CONTINUE,
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: *mut c_void,
    filter: *mut c_void,
    _end_of_stream: bool,
) -> i32 {
    guarded("response_headers", CONTINUE, || {
        // SAFETY: the pointers Envoy passes to this stream's hook.
        if let Some((mut envoy, filter)) = unsafe { stream(envoy, filter) } {
            filter.on_response_headers(&mut envoy);
        }
        CONTINUE
    })
}

// The hooks below do nothing, but Envoy resolves every one of them when it
// loads the module: a missing symbol fails the configuration.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: *mut c_void,
    _filter: *mut c_void,
    _end_of_stream: bool,
) -> i32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: *mut c_void,
    _filter: *mut c_void,
) -> i32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: *mut c_void,
    _filter: *mut c_void,
    _end_of_stream: bool,
) -> i32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: *mut c_void,
    _filter: *mut c_void,
) -> i32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _envoy: *mut c_void,
    _filter: *mut c_void,
) {
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: *mut c_void,
    _filter: *mut c_void,
    _callout_id: u64,
    _result: i32,
    _headers: *mut c_void,
    _headers_size: usize,
    _body: *mut c_void,
    _body_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: *mut c_void,
    _filter: *mut c_void,
    _stream_id: u64,
    _headers: *mut c_void,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: *mut c_void,
    _filter: *mut c_void,
    _stream_id: u64,
    _data: *const c_void,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: *mut c_void,
    _filter: *mut c_void,
    _stream_id: u64,
    _trailers: *mut c_void,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: *mut c_void,
    _filter: *mut c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: *mut c_void,
    _filter: *mut c_void,
    _stream_id: u64,
    _reason: i32,
) {
}

/// The xDS thread announced an update: record the gauges (main thread).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: *mut c_void,
    config: *const c_void,
    _event_id: u64,
) {
    guarded("config_scheduled", (), || {
        let Some(raw) = NonNull::new(config_envoy) else {
            return;
        };
        // SAFETY: `config` is null or the live `Arc<FilterConfig>` of
        // `config_new`: Envoy runs the event only while its configuration
        // (which holds that reference) exists; only borrowed here.
        if let Some(config) = unsafe { config.cast::<FilterConfig>().as_ref() } {
            config.on_scheduled(&mut ConfigGauges { raw });
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: *mut c_void,
    _filter: *mut c_void,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: *mut c_void,
    _filter: *mut c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: *mut c_void,
    _filter: *mut c_void,
) {
}
