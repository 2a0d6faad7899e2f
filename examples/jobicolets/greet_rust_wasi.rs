//! greet (Rust, wasm32-wasip1): the same jobicolet as greet_rust.rs, built for WASI with
//! the standard library's own allocator (docs/jobicolets.md).
//!
//! Event:  {"lang":"fr","name":"Ada"}   (canonical JSON: compact, keys sorted)
//! Result: code 0 "Bonjour, Ada!" (lang: en (default), es, fr, de);
//!         code 1 `missing "name"` (and a warn log); code 2 "unknown lang: xx".
//! Logs `lang=<lang>` at info level through env.log and prints `greet: <result>` on
//! stdout, which the host captures into the execution's `stdout`.
//!
//! ABI:
//! * imports `env.log` and WASI (`fd_write` for println!, via wasi-libc);
//! * `malloc` and `free` are wasi-libc's, exported as they are by the build
//!   (`-C link-arg=--export=malloc`, `--export=free`): `free(ptr)` takes one argument, so
//!   the module exports no `ver` (absent = 0 = one-argument free). Rust's `String` is
//!   allocated by the same libc malloc, so the host may free the result string;
//! * no `init`: nothing to register.
//!
//! Build (make examples, examples/jobicolets/build.py):
//!   rustc --target wasm32-wasip1 --crate-type cdylib -O -C strip=symbols \
//!         -C link-arg=--export=malloc -C link-arg=--export=free greet_rust_wasi.rs
//! (`wasm32-wasi` is the same target under its name before Rust 1.78.)

#[link(wasm_import_module = "env")]
extern "C" {
    #[link_name = "log"]
    fn host_log(level: u32, ptr: *const u8, len: u32);
}

const WARN: u32 = 2;
const INFO: u32 = 1;

fn log(level: u32, message: &str) {
    unsafe { host_log(level, message.as_ptr(), message.len() as u32) }
}

/// `res` points at the host's 16-byte result struct: code (u64), then the string's
/// address << 32 | its length (u64), both little-endian (wasm's byte order).
#[no_mangle]
pub unsafe extern "C" fn event(res: *mut u64, ptr: *const u8, len: u32) {
    let text = if len == 0 {
        "" // the host may pass address 0 for an empty event
    } else {
        std::str::from_utf8(std::slice::from_raw_parts(ptr, len as usize)).unwrap_or("")
    };
    let (code, result) = greet(text);
    println!("greet: {}", result);
    // a boxed str has exactly `len` bytes; the host copies it, then calls free(ptr)
    let result = result.into_boxed_str();
    let (rptr, rlen) = (result.as_ptr() as u64, result.len() as u64);
    std::mem::forget(result);
    *res = code;
    *res.add(1) = (rptr << 32) | rlen;
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
