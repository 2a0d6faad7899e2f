// greet (TinyGo, wasip1): the greet.c jobicolet written the way the original Jobico's
// TinyGo SDK builds a module (docs/jobicolets.md).
//
// Event:  {"lang":"fr","name":"Ada"}   (canonical JSON: compact, keys sorted)
// Result: code 0 "Bonjour, Ada!" (lang: en (default), es, fr, de);
//
//	code 1 `missing "name"` (and a warn log); code 2 "unknown lang: xx".
//
// Logs `lang=<lang>` at info level through env.log.
//
// ABI as TinyGo modules have it:
//   - imports `env.log` and WASI (`fd_write`: a Go panic prints `panic: <message>` on
//     stdout before it traps, and the host records that stdout);
//   - exports `_start`, which sets up TinyGo's heap and runtime and runs main (empty):
//     the host calls it first, and a `proc_exit(0)` inside it is a normal end;
//   - no `ver` (= 0): the host calls the one-argument `free(ptr)`;
//   - `malloc`/`free` keep every buffer handed to the host in a map, so TinyGo's
//     garbage collector does not reclaim it while the host holds its address;
//   - `init` registers the handler (before it, an event panics).
//
// Build (make examples, examples/jobicolets/build.py; TinyGo >= 0.33, whose runtime no
// longer exports malloc/free itself; with an older TinyGo delete the two exports below,
// its runtime's have the same ABI):
//
//	tinygo build -o greet_tinygo.wasm -target=wasip1 -no-debug -scheduler=none greet_tinygo.go
package main

import (
	"strings"
	"unsafe"
)

// main is required to build a program; _start runs it once (it does nothing).
func main() {}

const (
	levelInfo = 1
	levelWarn = 2
)

//go:wasmimport env log
func hostLog(level uint32, ptr unsafe.Pointer, size uint32)

func log(level uint32, message string) {
	if len(message) == 0 {
		hostLog(level, nil, 0)
		return
	}
	// the host copies the message during the call: the buffer stays ours
	hostLog(level, unsafe.Pointer(unsafe.StringData(message)), uint32(len(message)))
}

// live holds every buffer whose address the host holds (the input, the result struct,
// the result string) until the host frees it.
var live = map[uintptr][]byte{}

//export malloc
func malloc(size uint32) unsafe.Pointer {
	if size == 0 {
		return nil // the host passes (0, 0) for an empty event
	}
	buf := make([]byte, size)
	ptr := unsafe.Pointer(&buf[0])
	live[uintptr(ptr)] = buf
	return ptr
}

//export free
func free(ptr unsafe.Pointer) {
	delete(live, uintptr(ptr))
}

var handler func(string) (uint64, string)

//export init
func initialize() {
	handler = greet
}

// event is the main function: res points at the host's 16-byte result struct, written
// little-endian: the code (u64), then the result string's address << 32 | its length.
//
//export event
func event(res *[2]uint64, ptr unsafe.Pointer, size uint32) {
	input := ""
	if size > 0 {
		input = string(unsafe.Slice((*byte)(ptr), size))
	}
	if handler == nil {
		panic("init was not called")
	}
	code, result := handler(input)
	out := malloc(uint32(len(result)))
	if out != nil {
		copy(unsafe.Slice((*byte)(out), len(result)), result)
	}
	res[0] = code
	res[1] = uint64(uintptr(out))<<32 | uint64(len(result))
}

// jsonString returns the top-level string value of key in a flat JSON object
// (a backslash escape is copied as the escaped character).
func jsonString(json, key string) (string, bool) {
	pat := `"` + key + `":"`
	i := strings.Index(json, pat)
	if i < 0 {
		return "", false
	}
	var b strings.Builder
	for j := i + len(pat); j < len(json); j++ {
		switch c := json[j]; c {
		case '"':
			return b.String(), true
		case '\\':
			j++
			if j < len(json) {
				b.WriteByte(json[j])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}

func greet(event string) (uint64, string) {
	name, ok := jsonString(event, "name")
	if !ok || name == "" {
		log(levelWarn, "event without a name")
		return 1, `missing "name"`
	}
	lang, ok := jsonString(event, "lang")
	if !ok {
		lang = "en"
	}
	hello := map[string]string{"en": "Hello", "es": "Hola", "fr": "Bonjour", "de": "Hallo"}[lang]
	if hello == "" {
		return 2, "unknown lang: " + lang
	}
	log(levelInfo, "lang="+lang)
	return 0, hello + ", " + name + "!"
}
