"""Echo: the smallest Python jobicolet. It returns the event it was given.

`data` is the event, already parsed from JSON; the result is (code, value):
code 0 is success, any other code a failure (it follows the package's `error` chain).
A value that is not a string is returned as canonical JSON.
"""
import jobico


def event(data):
    jobico.info("echo received", type(data).__name__)
    return 0, data
