"""greet: the greet.c jobicolet in Python (docs/jobicolets.md).

Event:  {"lang": "fr", "name": "Ada"}
Result: code 0 "Bonjour, Ada!" (lang: en (default), es, fr, de);
        code 1 'missing "name"' (and a warn log); code 2 "unknown lang: xx".
Logs `lang=<lang>` at info level.

The runner (docs/python.md) does the ABI's work: `data` arrives parsed from the event's
canonical JSON, the (code, result) tuple is the 16-byte result, jobico.info/warn are
env.log's levels 1 and 2.
"""
import jobico

HELLO = {"en": "Hello", "es": "Hola", "fr": "Bonjour", "de": "Hallo"}


def event(data):
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        jobico.warn("event without a name")
        return 1, 'missing "name"'
    lang = data.get("lang", "en")
    if lang not in HELLO:
        return 2, f"unknown lang: {lang}"
    jobico.info(f"lang={lang}")
    return 0, f"{HELLO[lang]}, {name}!"
