"""The path contract: every destination path is normalised and confined to the root.

* A destination URL's path is absolute on the server (``~`` is the login
  directory, resolved by the adapter once connected); it is the root.
* ``NAME:PATH``: PATH is absolute, or relative to the root; after normalising
  it must stay inside the root. ``NAME:`` alone is the root. PATH names a
  directory.
* An object keeps its key relative to the source prefix; a single object
  lands under its base name.
"""

from __future__ import annotations

import posixpath

from fileferry.errors import PathOutsideRoot, UsageError

__all__ = ["is_within", "normalise", "relative_key", "split_destination", "target_dir",
           "target_path"]


def normalise(path: str) -> str:
    """``normpath`` that never keeps POSIX's special leading ``//``."""
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm.startswith("/") else norm


def is_within(root: str, path: str) -> bool:
    root = normalise(root)
    path = normalise(path)
    return root == "/" or path == root or path.startswith(root + "/")


def split_destination(arg: str) -> tuple[str, str]:
    """``NAME:PATH`` -> ``(NAME, PATH)``; PATH may be empty (the root)."""
    name, sep, path = arg.partition(":")
    if not sep or not name or "/" in name:
        raise UsageError(f"destination {arg!r} must be NAME:PATH, e.g. acme:incoming/ "
                         "(NAME from the configuration's destinations)")
    return name, path


def target_dir(root: str, path: str, name: str = "destination") -> str:
    """Resolve the directory a ``NAME:PATH`` argument names, confined to ``root``."""
    root = normalise(root)
    if "\x00" in path:
        raise PathOutsideRoot(f"{name}:{path!r} contains a NUL character")
    resolved = normalise(path if path.startswith("/") else posixpath.join(root, path or "."))
    if not is_within(root, resolved):
        raise PathOutsideRoot(f"{name}:{path} resolves to {resolved}, outside the "
                              f"destination root {root}; use a path inside it")
    return resolved


def relative_key(key: str, prefix: str | None) -> str:
    """The part of an object key that is kept at the destination."""
    if prefix is None:
        return posixpath.basename(key)
    return key[len(prefix):]


def target_path(root: str, directory: str, relative: str) -> str:
    """Where an object with ``relative`` key lands under ``directory``; confined to ``root``."""
    if not relative or relative.endswith("/") or "\x00" in relative:
        raise PathOutsideRoot(f"object name {relative!r} is not a file name")
    resolved = normalise(posixpath.join(directory, relative.lstrip("/")))
    if not is_within(directory, resolved) or not is_within(root, resolved):
        raise PathOutsideRoot(f"object key {relative!r} would land at {resolved}, outside "
                              f"{directory}; rename the object or send it on its own")
    return resolved
