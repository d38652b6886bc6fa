"""Resumable, verified, atomic HTTP downloads with a progress bar.

A download goes to `<dest>.part`; an interrupted one resumes from there with an HTTP Range request. The file is
renamed into place only after its size (and sha256, where known) check out, so `dest` is either complete or absent.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request

from tqdm import tqdm

from .errors import MeshconfError

CHUNK = 1 << 20


def sha256_of(path, chunk: int = CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest, sha256: str | None = None, size: int | None = None, progress: bool = True,
             timeout: float = 60.0) -> str:
    """Fetch `url` to `dest`, resuming a previous partial download. Returns `dest`."""
    dest = os.fspath(dest)
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    part = dest + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"User-Agent": "meshconf"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already complete
            response = None
        else:
            raise MeshconfError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise MeshconfError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}; check the network or use --mirror")\
            from None
    total = None
    if response is not None:
        with response:
            resumed = response.status == 206
            if not resumed:
                have = 0  # the server ignored the Range request: start over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else size
            mode = "ab" if resumed else "wb"
            try:
                with open(part, mode) as fh, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                  desc=os.path.basename(dest), disable=not progress,
                                                  leave=False) as bar:
                    while True:
                        block = response.read(CHUNK)
                        if not block:
                            break
                        fh.write(block)
                        bar.update(len(block))
            except (OSError, urllib.error.URLError) as exc:
                raise MeshconfError(f"download of {url} was interrupted ({exc}); run the same command again to "
                                    f"resume from {os.path.getsize(part)} bytes") from None
    got = os.path.getsize(part)
    expected_size = size if size is not None else total
    if expected_size is not None and got != expected_size:
        if got > expected_size:
            os.remove(part)
            raise MeshconfError(f"download of {url} is larger than expected ({got} > {expected_size} bytes); "
                                f"the partial file was removed, run again")
        raise MeshconfError(f"download of {url} stopped at {got} of {expected_size} bytes; run the same command "
                            f"again to resume")
    if sha256 is not None:
        digest = sha256_of(part)
        if digest != sha256:
            os.remove(part)
            raise MeshconfError(f"download of {url} is corrupt (sha256 {digest[:12]}... != expected "
                                f"{sha256[:12]}...); the bad file was removed, run again")
    os.replace(part, dest)
    return dest
