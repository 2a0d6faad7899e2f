"""The guest side of a Python package zip. It runs INSIDE the sealed CPython, like python_guest.py.

Never imported on the host: ``jobico_runtime.python`` reads this file's text; the
guest compiles it once per worker process beside the runner (requests ``P``/``J``) and the
runner loads it (request ``G``) only for an event of a package zip, so that a single file's
event does not pay for it.

A package zip's ``main.py`` runs as the module ``main`` (file name ``<zip>/main.py``); its
other files, fetched by the runner (request ``F``), are served to ``import`` from memory by a
meta-path finder and loader (:class:`Package`): the file ``helpers.py`` is the module
``helpers``, ``pkg/__init__.py`` the package ``pkg`` (a directory without one is a package
too), ``pkg/util.py`` the module ``pkg.util``; each under the file name ``<zip>/<path>``
(its source lines in ``linecache``) so that tracebacks show the tenant's file and line. A
root module named like a standard-library module (or ``jobico``) is refused by the upload
and deploy checks and never served. Nothing touches a file system.
"""
import sys


def files(call, package):
    """``{"<zip>/<path>": source}`` of the zip's files other than main.py (request ``F``)."""
    raw = call(b"F").decode("utf-8")
    parts = raw.split("\0") if raw else []
    return {f"{package}/{path}": text for path, text in zip(parts[0::2], parts[1::2])}


def prune(tb, runner):
    """Unlink the import machinery's and the runner's frames (file ``runner``, or this file's)
    from a traceback that starts at a tenant's frame (a helper's error, raised while main.py
    imported it)."""
    own = prune.__code__.co_filename
    prev = tb
    t = tb.tb_next
    while t is not None:
        name = t.tb_frame.f_code.co_filename
        if name in (runner, own) or name.startswith("<frozen importlib"):
            prev.tb_next = t.tb_next
        else:
            prev = t
        t = t.tb_next


class Package:
    """A package zip's modules, served to ``import`` from memory (a meta-path finder and loader)."""

    def __init__(self, package, files):
        reserved = set(sys.stdlib_module_names)
        reserved.update(n.partition(".")[0] for n in sys.builtin_module_names)
        reserved.update(("jobico", "jobicolet", "_host"))
        self.modules = {}   # module name -> (file name or None for a directory, source, is a package)
        self.shadowing = None
        cut = len(package) + 1
        for name, text in files.items():
            parts = name[cut:-3].split("/")
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts.pop()
            if not parts or not all(p.isidentifier() for p in parts):
                continue  # not importable (compiled by the upload check all the same)
            if parts[0] in reserved:
                if self.shadowing is None:
                    self.shadowing = (name, parts[0])
                continue  # never served: the standard library's (or the platform's) module wins
            self.modules[".".join(parts)] = (name, text, is_pkg)
            for i in range(1, len(parts)):
                self.modules.setdefault(".".join(parts[:i]), (None, "", True))

    def install(self, filename, source):
        """Serve the modules; make ``main`` (main.py) the module the runner runs and return it."""
        import _frozen_importlib as bootstrap
        self.spec = bootstrap.ModuleSpec
        self.modules["main"] = (filename, source, False)
        module = bootstrap.module_from_spec(self.find_spec("main"))
        sys.modules["main"] = module
        sys.meta_path.insert(0, self)
        return module

    def find_spec(self, fullname, path=None, target=None):
        found = self.modules.get(fullname)
        if found is None:
            return None
        spec = self.spec(fullname, self, origin=found[0], is_package=found[2])
        spec.has_location = found[0] is not None   # __file__ = the file name
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name, text, _ = self.modules[module.__spec__.name]
        if name is None:
            return
        import linecache
        linecache.cache[name] = (len(text), None, text.splitlines(True), name)
        exec(compile(text, name, "exec", dont_inherit=True), module.__dict__)

    def get_source(self, fullname):
        found = self.modules.get(fullname)
        if found is None:
            raise ImportError(f"no module {fullname!r} in the package", name=fullname)
        return found[1]
