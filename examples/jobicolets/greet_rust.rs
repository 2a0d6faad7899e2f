//! greet (Rust, wasm32-unknown-unknown): the greet.c jobicolet written the way the
//! original Jobico's Rust SDK builds a module, quirks included (docs/jobicolets.md).
//!
//! Event:  {"lang":"fr","name":"Ada"}   (canonical JSON: compact, keys sorted)
//! Result: code 0 "Bonjour, Ada!" (lang: en (default), es, fr, de);
//!         code 1 `missing "name"` (and a warn log); code 2 "unknown lang: xx".
//! Logs `lang=<lang>` at info level through env.log.
//!
//! ABI as the Rust SDK has it:
//! * imports only `env.log` (no WASI at all on this target);
//! * exports `ver` = 1, so the host calls the size-taking `free(ptr, size)`;
//! * `malloc` boxes an *empty* Vec with the requested capacity: `into_boxed_slice` shrinks
//!   it to length 0, so every call returns the same dangling address (1). The host writes
//!   the input and gets the result struct at that address; they overlap, and it works only
//!   because the input is read before the result is written (and the stack, placed first
//!   in memory by rustc, never reaches its bottom bytes);
//! * `free` rebuilds a Vec from (ptr, size) and drops it: on address 1 the allocator traps.
//!   The host ignores a trap in `free` after a successful main call (the shared ABI's
//!   "quirks"); the result string, allocated for real, is freed without trouble;
//! * the main function returns a 16-byte struct: the C ABI of wasm32 passes it as a
//!   hidden first argument, which is the host's result pointer: `event(res, ptr, len)`;
//! * `init` registers the handler (a call before `init` traps).
//!
//! Build (make examples, examples/jobicolets/build.py):
//!   rustc --target wasm32-unknown-unknown --crate-type cdylib -O -C strip=symbols greet_rust.rs
use std::mem::MaybeUninit;

/// What the main function returns: the host reads it at the result pointer.
#[repr(C)]
pub struct Result16 {
    /// the result code (0 = success)
    code: u64,
    /// the result string: address in the high 32 bits, length in the low 32 bits
    string: u64,
}

type Handler = fn(&str) -> (u64, String);
static mut HANDLER: Option<Handler> = None;

#[link(wasm_import_module = "env")]
extern "C" {
    #[link_name = "log"]
    fn host_log(level: u32, ptr: *const u8, len: u32);
}

const WARN: u32 = 2;
const INFO: u32 = 1;

fn log(level: u32, message: &str) {
    // the host copies the message during the call: the buffer stays ours
    unsafe { host_log(level, message.as_ptr(), message.len() as u32) }
}

#[no_mangle]
pub extern "C" fn ver() -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn init() {
    unsafe { HANDLER = Some(greet) }
}

#[no_mangle]
pub extern "C" fn malloc(size: u32) -> *mut u8 {
    // the SDK's allocation, quirk kept: capacity `size`, length 0, then shrunk to length 0
    let v: Vec<MaybeUninit<u8>> = Vec::with_capacity(size as usize);
    Box::into_raw(v.into_boxed_slice()) as *mut u8
}

#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut u8, size: u32) {
    drop(Vec::from_raw_parts(ptr, 0, size as usize));
}

#[no_mangle]
pub unsafe extern "C" fn event(ptr: *const u8, len: u32) -> Result16 {
    let input = std::slice::from_raw_parts(ptr, len as usize);
    let text = std::str::from_utf8(input).unwrap_or("");
    let handler = match HANDLER {
        Some(h) => h,
        None => core::arch::wasm32::unreachable(), // init was not called
    };
    let (code, result) = handler(text);
    // hand the string over: exactly `len` bytes, freed by the host with free(ptr, len)
    let result = result.into_boxed_str();
    let (rptr, rlen) = (result.as_ptr() as u64, result.len() as u64);
    std::mem::forget(result);
    Result16 { code, string: (rptr << 32) | rlen }
}

/// The top-level string value of `key` in a flat JSON object ("\" escapes copied as is).
fn json_string(json: &str, key: &str) -> Option<String> {
    let pat = format!("\"{}\":\"", key);
    let start = json.find(&pat)? + pat.len();
    let mut out = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            _ => out.push(c),
        }
    }
    None
}

fn greet(event: &str) -> (u64, String) {
    let name = match json_string(event, "name") {
        Some(n) if !n.is_empty() => n,
        _ => {
            log(WARN, "event without a name");
            return (1, "missing \"name\"".to_string());
        }
    };
    let lang = json_string(event, "lang").unwrap_or_else(|| "en".to_string());
    let hello = match lang.as_str() {
        "en" => "Hello",
        "es" => "Hola",
        "fr" => "Bonjour",
        "de" => "Hallo",
        _ => return (2, format!("unknown lang: {}", lang)),
    };
    log(INFO, &format!("lang={}", lang));
    (0, format!("{}, {}!", hello, name))
}
