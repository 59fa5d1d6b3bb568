"""Inputs in object storage: s3://, gs://, abfs:// (and az://, abfss://, hdfs://), read with
pyarrow's filesystems, and any other scheme an installed fsspec implementation knows.

Credentials, regions and endpoints come from each store's usual environment variables
(AWS_ACCESS_KEY_ID, AWS_REGION, AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS,
AZURE_STORAGE_ACCOUNT_NAME, ...), the same ones the Delta Lake writer reads; `store_env()`
lists those set here so that the driver can hand them to Ray workers.

This module knows nothing of inputs: reading/inputs.py turns what it returns (or raises:
StoreError, whose message is the row's reason) into items and rows. pyarrow and fsspec are
imported inside functions only.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from dataclasses import dataclass

__all__ = [
    "StoreError",
    "StoreObject",
    "is_store_uri",
    "list_objects",
    "object_size",
    "open_object",
    "read_object",
    "store_env",
]

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_NOT_STORES = {"http", "https", "file", "ray"}
# environment variables the stores read (handed to Ray workers, which do not inherit ours)
_ENV_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "GCS_", "HF_", "STORAGE_EMULATOR_HOST")
# A GCS emulator's endpoint, as Google's own client libraries take it (e.g.
# http://127.0.0.1:9023); pyarrow's GCS filesystem does not read it, so gs:// honours it here
GCS_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
_lock = threading.Lock()


class StoreError(Exception):
    """An object cannot be listed or read; the message is the reason (a row's `error`)."""


@dataclass(frozen=True)
class StoreObject:
    uri: str
    size: int


def is_store_uri(text: str) -> bool:
    """scheme://... that is neither a URL (http/https) nor file:// nor ray://."""
    m = _SCHEME.match(text)
    return bool(m) and m.group(1).lower() not in _NOT_STORES


def store_env() -> dict[str, str]:
    """The object stores' environment variables set in this process."""
    return {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}


@functools.lru_cache(maxsize=32)
def _filesystem(scheme: str, authority: str, env: frozenset):
    """A pyarrow filesystem for scheme://authority, cached per process and per the stores'
    settings `env` (an endpoint or credentials changed since: a new one); paths in it are
    "authority/key"."""
    import pyarrow.fs as pafs

    root = f"{scheme}://{authority}/"
    emulator = dict(env).get(GCS_EMULATOR_ENV)
    if scheme == "gs" and emulator:  # anonymous, at the emulator's endpoint
        proto, _, host = emulator.rpartition("://")
        return pafs.GcsFileSystem(
            anonymous=True, endpoint_override=host.rstrip("/"), scheme=proto or "http"
        )
    try:
        fs, _ = pafs.FileSystem.from_uri(root)
        return fs
    except Exception as first:
        try:
            import fsspec
        except ImportError:
            raise StoreError(f"no filesystem for {scheme}:// ({first})") from None
        try:
            ffs, _ = fsspec.core.url_to_fs(root)
        except (ImportError, ValueError) as e:
            raise StoreError(
                f"no filesystem for {scheme}:// (pyarrow: {first}; fsspec: {e}); install "
                "the fsspec package for that store"
            ) from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(ffs))


def _split(uri: str):
    m = _SCHEME.match(uri)
    if not m:
        raise StoreError(f"not a store URI: {uri}")
    scheme = m.group(1).lower()
    rest = uri[m.end() :]
    authority, _, key = rest.partition("/")
    with _lock:
        fs = _filesystem(scheme, authority, frozenset(store_env().items()))
    path = f"{authority}/{key}".rstrip("/") or authority
    return fs, path, f"{scheme}://{authority}/"


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, FileNotFoundError) or "NoSuchKey" in text or "not found" in text.lower():
        return "no such object"
    if isinstance(e, PermissionError) or "AccessDenied" in text or "403" in text:
        return f"access denied ({text[:200]})"
    return f"cannot read the object ({type(e).__name__}: {text[:200]})"


def list_objects(uri: str, recursive: bool = True) -> tuple[str, list[StoreObject]]:
    """("object" | "prefix" | "missing", objects): the object itself, or the objects under a
    prefix (a "folder"), in name order. Raises StoreError when the store cannot be listed."""
    import pyarrow.fs as pafs

    fs, path, root = _split(uri)
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return "object", [StoreObject(uri, int(info.size or 0))]
        selector = pafs.FileSelector(path, recursive=recursive, allow_not_found=True)
        found = [i for i in fs.get_file_info(selector) if i.type == pafs.FileType.File]
    except StoreError:
        raise
    except Exception as e:
        raise StoreError(f"cannot list {uri}: {_reason(e)}") from None
    if not found and info.type != pafs.FileType.Directory:
        return "missing", []
    scheme = root.split("://", 1)[0]
    objects = [StoreObject(f"{scheme}://{i.path}", int(i.size or 0)) for i in found]
    return "prefix", sorted(objects, key=lambda o: o.uri)


def object_size(uri: str) -> int:
    """The object's size in bytes; StoreError("no such object") and the like."""
    import pyarrow.fs as pafs

    fs, path, _ = _split(uri)
    try:
        info = fs.get_file_info(path)
    except Exception as e:
        raise StoreError(_reason(e)) from None
    if info.type == pafs.FileType.Directory:
        raise StoreError("is a prefix (a folder), not an object")
    if info.type != pafs.FileType.File:
        raise StoreError("no such object")
    return int(info.size or 0)


def open_object(uri: str, random_access: bool = False):
    """A pyarrow file for the object (random_access: seekable, as Parquet needs)."""
    fs, path, _ = _split(uri)
    try:
        return fs.open_input_file(path) if random_access else fs.open_input_stream(path)
    except Exception as e:
        raise StoreError(_reason(e)) from None


def read_object(uri: str, limit: int) -> bytes:
    """At most limit + 1 bytes of the object (the caller tells an object over the limit)."""
    fs, path, _ = _split(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read(limit + 1)
    except Exception as e:
        raise StoreError(_reason(e)) from None
