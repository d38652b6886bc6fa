"""Resumable, verified, atomic HTTP downloads with a progress bar.

A download goes to `<dest>.part`; an interrupted one resumes from there with an HTTP Range request. The file gets
its final name only after every check passed (size, sha256 where known, and the caller's structural check), so
`dest` is either a verified file or absent. A download is capped (`max_bytes`): a server that streams forever
cannot fill the disk. A 206 answer is used only if its Content-Range starts where the partial file ends, and a 416
("nothing left to send") is accepted only when the partial file has the size the server or the asset states.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from typing import Callable

from tqdm import tqdm

from ..errors import MeshconfError
from ..files.fileio import sha256_file

CHUNK = 1 << 20
DEFAULT_MAX_BYTES = 1 << 30  # no public file meshconf fetches is near 1 GiB



class Unreachable(MeshconfError):
    """The host did not answer (no connection, TLS refused): the caller may try another route."""

def _open(url: str, have: int, timeout: float):
    """(response or None for a 416, the 416's stated total size or None)."""
    request = urllib.request.Request(url, headers={"User-Agent": "meshconf"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout), None
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            match = re.match(r"bytes \*/(\d+)", exc.headers.get("Content-Range", "") or "")
            return None, int(match.group(1)) if match else None
        raise MeshconfError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise Unreachable(f"cannot reach {url}: {getattr(exc, 'reason', exc)}; check the network or use --mirror")\
            from None


def _resume_start(response) -> tuple[int | None, int | None]:
    """(first byte, total size) from a 206's Content-Range, (None, None) when it has none or is malformed."""
    match = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "") or "")
    if not match:
        return None, None
    return int(match.group(1)), None if match.group(3) == "*" else int(match.group(3))


def download(url: str, dest, sha256: str | None = None, size: int | None = None, progress: bool = True,
             timeout: float = 60.0, max_bytes: int | None = None,
             verify: Callable[[str], None] | None = None) -> str:
    """Fetch `url` to `dest`, resuming a previous partial download. `verify(path)` (raising `MeshconfError`) runs
    on the complete file before it is renamed into place; a file that fails it is kept as `<dest>.invalid`.
    Returns `dest`."""
    dest = os.fspath(dest)
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    part = dest + ".part"
    limit = size if size is not None else (max_bytes or DEFAULT_MAX_BYTES)
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if have > limit:
        os.remove(part)
        have = 0
    response, total = _open(url, have, timeout)
    if response is None:  # 416: the server has nothing after byte `have`
        known = size if size is not None else total
        if known is None or have != known:
            os.remove(part)  # not provably complete: start over
            have, total = 0, None
            response, _ = _open(url, 0, timeout)
    if response is not None:
        with response:
            if response.status == 206:
                start, total = _resume_start(response)
                if start != have:  # the server sent another range than asked for: do not splice it in
                    response.close()
                    os.remove(part)
                    have = 0
                    response, _ = _open(url, 0, timeout)
                    if response is None:
                        raise MeshconfError(f"download of {url} failed: the server refuses a plain request")
            if response.status != 206:
                have = 0  # a full answer (the server ignored the Range request): start over
                length = response.headers.get("Content-Length")
                total = int(length) if length is not None and length.isdigit() else None
            expected = size if size is not None else total
            if expected is not None and expected > limit:
                raise MeshconfError(f"download of {url} announces {expected} bytes, more than the {limit}-byte "
                                    f"limit for this file; check the URL or --mirror")
            _stream(response, part, "ab" if have else "wb", have, expected, limit, url, dest, progress)
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
        digest = sha256_file(part)
        if digest != sha256:
            os.remove(part)
            raise MeshconfError(f"download of {url} is corrupt (sha256 {digest[:12]}... != expected "
                                f"{sha256[:12]}...); the bad file was removed, run again")
    if verify is not None:
        try:
            verify(part)
        except MeshconfError as exc:
            os.replace(part, dest + ".invalid")
            raise MeshconfError(f"{os.path.basename(dest)} from {url} failed its check and was kept as "
                                f"{dest}.invalid: {exc}") from None
    os.replace(part, dest)
    return dest


def _stream(response, part: str, mode: str, have: int, total, limit: int, url: str, dest: str,
            progress: bool) -> None:
    try:
        with open(part, mode) as fh, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                          desc=os.path.basename(dest), disable=None if progress else True,
                                          leave=False) as bar:
            written = have
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                written += len(block)
                if written > limit:
                    fh.close()
                    os.remove(part)
                    raise MeshconfError(f"download of {url} exceeds the {limit}-byte limit for this file and was "
                                        f"stopped and removed; check the URL or --mirror")
                fh.write(block)
                bar.update(len(block))
    except (OSError, urllib.error.URLError) as exc:
        got = os.path.getsize(part) if os.path.exists(part) else 0
        raise MeshconfError(f"download of {url} was interrupted ({exc}); run the same command again to "
                            f"resume from {got} bytes") from None
