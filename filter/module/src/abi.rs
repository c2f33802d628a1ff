//! The only unsafe code of the module: Envoy's dynamic-module C ABI (v0.2.0,
//! Envoy 1.40), declared by hand (the Rust SDK is not on crates.io and its
//! bindgen step needs Envoy's source tree), and the hooks Envoy calls.
//!
//! Every hook checks the pointers Envoy hands over and catches panics: a bug
//! in the filter logs and lets the request continue, it never unwinds into
//! Envoy. Behind this module the filter sees a safe API: [`HttpFilter`] for
//! one stream during one hook, [`FilterConfigHandle`] while configuring.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};
use std::ptr::{self, NonNull};

use crate::filter::Stream;
use crate::log::LogLevel;

mod config;
mod hooks;

pub use config::{ConfigGauges, FilterConfigHandle};

/// A buffer Envoy owns (`envoy_dynamic_module_type_envoy_buffer`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const c_char,
    length: usize,
}

/// A buffer the module owns (`envoy_dynamic_module_type_module_buffer`).
#[repr(C)]
#[derive(Clone, Copy)]
struct ModuleBuffer {
    ptr: *const c_char,
    length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    /// The null buffer: "no value" (removes a header).
    fn null() -> Self {
        Self {
            ptr: ptr::null(),
            length: 0,
        }
    }
}

/// `envoy_dynamic_module_type_module_http_header`.
#[repr(C)]
struct ModuleHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

/// `envoy_dynamic_module_type_envoy_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
struct EnvoyHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

impl EnvoyHttpHeader {
    const EMPTY: Self = Self {
        key_ptr: ptr::null(),
        key_length: 0,
        value_ptr: ptr::null(),
        value_length: 0,
    };

    /// Its name and value, checked; valid until the hook ends.
    fn bytes(&self) -> Option<(&[u8], &[u8])> {
        // SAFETY: Envoy filled the entry with buffers valid until this hook
        // ends; callers copy what they keep before returning.
        let key = unsafe { envoy_bytes(self.key_ptr, self.key_length) }?;
        let value = unsafe { envoy_bytes(self.value_ptr, self.value_length) }?;
        Some((key, value))
    }
}

/// `envoy_dynamic_module_type_http_header_type`.
const REQUEST_HEADER: i32 = 0;
const RESPONSE_HEADER: i32 = 2;
/// `envoy_dynamic_module_type_attribute_id`: `source.address`, `upstream.address`.
const ATTRIBUTE_SOURCE_ADDRESS: i32 = 24;
const ATTRIBUTE_UPSTREAM_ADDRESS: i32 = 41;
/// `..._on_http_filter_request_headers_status`: Continue, StopIteration.
const CONTINUE: i32 = 0;
const STOP_ITERATION: i32 = 1;
const METRICS_SUCCESS: i32 = 0;

extern "C" {
    fn envoy_dynamic_module_callback_log(level: i32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_http_get_header(
        filter: *mut c_void,
        header_type: i32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: *mut c_void,
        header_type: i32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: *mut c_void,
        header_type: i32,
        result: *mut EnvoyHttpHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: *mut c_void,
        header_type: i32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter: *mut c_void,
        header_type: i32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: *mut c_void,
        status_code: u32,
        headers: *const ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_clear_route_cache(filter: *mut c_void);
    fn envoy_dynamic_module_callback_http_set_upstream_override_host(
        filter: *mut c_void,
        host: ModuleBuffer,
        strict: bool,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: *mut c_void,
        attribute_id: i32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: *mut c_void,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> i32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: *mut c_void,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> i32;
    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: *mut c_void,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        gauge_id: *mut usize,
    ) -> i32;
    fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: *mut c_void,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> i32;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: *mut c_void,
    ) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: *mut c_void);
}

/// Logs under Envoy's `dynamic_modules` logger; callable from any thread.
pub fn envoy_log(level: LogLevel, message: &str) {
    // SAFETY: the buffer points into `message`, alive for the call; Envoy
    // copies it before returning.
    unsafe { envoy_dynamic_module_callback_log(level as i32, ModuleBuffer::of(message.as_bytes())) }
}

/// The bytes of an Envoy buffer, checked: null or oversized is `None`.
///
/// SAFETY (caller): a non-null `ptr` must point to `length` readable bytes
/// that stay valid for `'a` (Envoy: until the hook returns, or a setter).
unsafe fn envoy_bytes<'a>(ptr: *const c_char, length: usize) -> Option<&'a [u8]> {
    if length == 0 {
        return Some(&[]);
    }
    if ptr.is_null() || length > isize::MAX as usize {
        return None;
    }
    Some(std::slice::from_raw_parts(ptr.cast::<u8>(), length))
}

/// One stream's filter in Envoy, valid for the hook it was handed to.
pub struct HttpFilter {
    raw: NonNull<c_void>,
}

impl HttpFilter {
    fn header(&self, header_type: i32, name: &str) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer {
            ptr: ptr::null(),
            length: 0,
        };
        let mut count = 0usize;
        // SAFETY: `raw` is the live filter of this hook; `out` and `count`
        // are valid for writes; the key is borrowed for the call.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.raw.as_ptr(),
                header_type,
                ModuleBuffer::of(name.as_bytes()),
                &mut out,
                0,
                &mut count,
            )
        };
        if !found || count == 0 {
            return None;
        }
        // SAFETY: Envoy's value stays valid until this hook ends or a header
        // is set; it is copied at once.
        unsafe { envoy_bytes(out.ptr, out.length) }.map(<[u8]>::to_vec)
    }

    fn set(&mut self, header_type: i32, name: &str, value: Option<&str>) -> bool {
        let value = value.map_or(ModuleBuffer::null(), |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: `raw` is the live filter; both buffers outlive the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.raw.as_ptr(),
                header_type,
                ModuleBuffer::of(name.as_bytes()),
                value,
            )
        }
    }

    fn request_headers_size(&self) -> usize {
        // SAFETY: `raw` is the live filter of this hook.
        unsafe {
            envoy_dynamic_module_callback_http_get_headers_size(self.raw.as_ptr(), REQUEST_HEADER)
        }
    }

    /// Envoy's request headers written into the start of `out`: the filled
    /// part (empty if Envoy failed), or `None` when they do not fit.
    fn fill_request_headers<'b>(
        &self,
        out: &'b mut [EnvoyHttpHeader],
    ) -> Option<&'b [EnvoyHttpHeader]> {
        let out = out.get_mut(..self.request_headers_size())?;
        // SAFETY: `out` has room for exactly the headers Envoy just counted.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_headers(
                self.raw.as_ptr(),
                REQUEST_HEADER,
                out.as_mut_ptr(),
            )
        };
        Some(if ok { out } else { &[] })
    }

    fn attribute(&self, id: i32) -> Option<String> {
        let mut out = EnvoyBuffer {
            ptr: ptr::null(),
            length: 0,
        };
        // SAFETY: `raw` is the live filter; `out` is valid for writes.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.raw.as_ptr(),
                id,
                &mut out,
            )
        };
        if !ok {
            return None;
        }
        // SAFETY: Envoy's buffer is valid until the hook ends; copied at once.
        let bytes = unsafe { envoy_bytes(out.ptr, out.length) }?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl Stream for HttpFilter {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.header(REQUEST_HEADER, name)
    }

    /// One walk over Envoy's map into a stack array, copying only the values
    /// asked for: Envoy looks a name up by scanning the map, so a few names
    /// cost more as single lookups (callgrind: ~1.1k instructions each).
    fn request_headers_named<const N: usize>(&self, names: [&str; N]) -> [Option<Vec<u8>>; N] {
        let mut raw = [EnvoyHttpHeader::EMPTY; 32];
        let Some(filled) = self.fill_request_headers(&mut raw) else {
            return names.map(|name| self.request_header(name));
        };
        names.map(|name| {
            filled.iter().find_map(|h| {
                let (key, value) = h.bytes()?;
                (key == name.as_bytes()).then(|| value.to_vec())
            })
        })
    }

    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut raw = vec![EnvoyHttpHeader::EMPTY; self.request_headers_size()];
        self.fill_request_headers(&mut raw)
            .unwrap_or_default()
            .iter()
            .filter_map(|h| {
                let (key, value) = h.bytes()?;
                Some((String::from_utf8_lossy(key).into_owned(), value.to_vec()))
            })
            .collect()
    }

    fn set_request_header(&mut self, name: &str, value: &str) -> bool {
        self.set(REQUEST_HEADER, name, Some(value))
    }

    fn remove_request_header(&mut self, name: &str) -> bool {
        self.set(REQUEST_HEADER, name, None)
    }

    fn add_response_header(&mut self, name: &str, value: &str) -> bool {
        // SAFETY: `raw` is the live filter; both buffers outlive the call.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.raw.as_ptr(),
                RESPONSE_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            )
        }
    }

    /// Answers locally; the hook must then stop iteration.
    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &str) {
        let headers: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader {
                key_ptr: k.as_ptr().cast(),
                key_length: k.len(),
                value_ptr: v.as_ptr().cast(),
                value_length: v.len(),
            })
            .collect();
        // SAFETY: `raw` is the live filter; the header array and the body
        // outlive the call, which copies them.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.raw.as_ptr(),
                status,
                headers.as_ptr(),
                headers.len(),
                ModuleBuffer::of(body.as_bytes()),
                ModuleBuffer::of(b"dnslb"),
            )
        }
    }

    fn clear_route_cache(&mut self) {
        // SAFETY: `raw` is the live filter of this hook.
        unsafe { envoy_dynamic_module_callback_http_clear_route_cache(self.raw.as_ptr()) }
    }

    fn set_upstream_override_host(&mut self, host: &str) -> bool {
        // SAFETY: `raw` is the live filter; the buffer outlives the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_upstream_override_host(
                self.raw.as_ptr(),
                ModuleBuffer::of(host.as_bytes()),
                false,
            )
        }
    }

    /// `ip:port` of the downstream peer.
    fn source_address(&self) -> Option<String> {
        self.attribute(ATTRIBUTE_SOURCE_ADDRESS)
    }

    /// `ip:port` of the upstream host that answered (after retries, the last).
    fn upstream_address(&self) -> Option<String> {
        self.attribute(ATTRIBUTE_UPSTREAM_ADDRESS)
    }

    fn increment_counter(&mut self, id: usize, by: u64) {
        // SAFETY: `raw` is the live filter; no labels (null, 0).
        unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.raw.as_ptr(),
                id,
                ptr::null(),
                0,
                by,
            );
        }
    }
}
