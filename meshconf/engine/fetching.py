"""Getting the public model files: verified downloads into the data folder (`fetch_assets`, which `meshconf fetch`
runs) and the first-run step every job takes (`ensure`: fetch what is missing, or say in one line per file what is
missing and how to get it)."""

from __future__ import annotations

import os

from ..assets import catalog as A
from ..assets.download import Unreachable, download
from ..errors import MeshconfError
from ..files.fileio import parse_json, sha256_file, write_json
from .validate import check_asset


def source_url(a: A.Asset, mirror: str | None) -> str:
    return a.url if not mirror else mirror.rstrip("/") + "/" + a.url.rsplit("/", 1)[-1]


ARCHIVE_MAX_BYTES = 2 << 30  # SPIN's data.tar.gz; anything far larger is not that archive


def recorded_checksums(root) -> dict:
    """relpath -> SHA-256 of each file as it was first downloaded and checked (`checksums.json`)."""
    path = os.path.join(root, A.CHECKSUMS)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as fh:
            record = parse_json(fh)
    except (OSError, ValueError) as exc:
        raise MeshconfError(f"{path} is not readable JSON ({exc}); delete it to record the files anew") from None
    return record if isinstance(record, dict) else {}


def check_recorded(a: A.Asset, path: str, root) -> None:
    """Trust on first use: a file (or a fresh download of it) whose SHA-256 differs from the one recorded at its
    first download is refused. (A value the publisher gives is pinned in the catalog and checked by `download`.)"""
    want = recorded_checksums(root).get(a.relpath)
    if want is None:
        return
    got = sha256_file(path)
    if got != want:
        raise MeshconfError(f"{a.relpath} has SHA-256 {got[:12]}..., not the {want[:12]}... recorded when it was "
                            f"downloaded (in {os.path.join(root, A.CHECKSUMS)}); delete the file to fetch it again, "
                            f"or its entry there if the publisher changed it or you replaced it on purpose")


def record_checksum(a: A.Asset, path: str, root) -> str:
    """Record the SHA-256 of a newly fetched file that passed its checks (`check_recorded` included)."""
    digest = sha256_file(path)
    record = recorded_checksums(root)
    record[a.relpath] = digest
    write_json(os.path.join(root, A.CHECKSUMS), dict(sorted(record.items())))
    return digest


def _with_fallback(url: str, fetch, log):
    """`fetch(url)`, and for hosts that served plain http only, `fetch` over http when https cannot connect."""
    try:
        return fetch(url)
    except Unreachable:
        host = url.split("/")[2] if url.startswith("https://") else ""
        if host not in A.HTTP_FALLBACK_HOSTS:
            raise
        plain = "http://" + url[len("https://"):]
        log(f"  note      {host} does not answer over https; fetching over http (checked by structure and "
            f"recorded by SHA-256)")
        return fetch(plain)


def _checker(a: A.Asset, root):
    """What a new file must pass before it takes its final name: its structure, and any recorded SHA-256."""
    def verify(path: str) -> None:
        check_asset(a.name, path)
        check_recorded(a, path, root)
    return verify


def fetch_assets(assets, root, mirror=None, force=False, progress=True, log=print) -> list[str]:
    """Download the given (downloadable) assets into `root`; returns the paths written.

    A file already present is checked again (it may have been copied in, or left by an older version); one that
    fails is moved to `<file>.invalid` and fetched again. A new file is checked before it gets its final name."""
    written = []
    archives = {}
    pending = []
    for a in assets:
        if not a.downloadable:
            continue
        present = A.locate(a.name, root)
        if present is None or force:
            pending.append(a)
            continue
        try:
            check_asset(a.name, present)
            check_recorded(a, present, root)
        except MeshconfError as exc:
            os.replace(present, present + ".invalid")
            log(f"  invalid   {a.relpath} ({exc}); moved to {present}.invalid, fetching it again")
            pending.append(a)
            continue
        log(f"  ok        {a.relpath}")
    for a in pending:
        dest = os.path.join(root, a.relpath)
        url = source_url(a, mirror)
        if a.archive_member:
            if url not in archives:
                archives[url] = _fetch_archive(url, root, progress, log)
            try:
                _extract_checked(a, archives[url], dest, root)
            except MeshconfError as exc:
                if "failed its check" in str(exc):
                    raise
                # a truncated archive (an interrupted earlier run): fetch it again once
                log(f"  refetch   {url} ({exc})")
                os.remove(archives[url])
                archives[url] = _fetch_archive(url, root, progress, log)
                _extract_checked(a, archives[url], dest, root)
        else:
            log(f"  download  {url}")
            _with_fallback(url, lambda u: download(u, dest, sha256=a.sha256, size=a.size, progress=progress,
                                                   verify=_checker(a, root), max_bytes=a.max_bytes), log)
        record_checksum(a, dest, root)
        log(f"  fetched   {a.relpath}")
        written.append(dest)
    for archive in archives.values():
        if os.path.exists(archive):
            os.remove(archive)
    return written


def _fetch_archive(url: str, root: str, progress: bool, log) -> str:
    archive = os.path.join(root, ".downloads", url.rsplit("/", 1)[-1])
    if not os.path.exists(archive):
        log(f"  download  {url}")
        _with_fallback(url, lambda u: download(u, archive, progress=progress, max_bytes=ARCHIVE_MAX_BYTES), log)
    return archive


def _extract_checked(a: A.Asset, archive: str, dest: str, root) -> None:
    """The member to a temporary name, checked, then renamed: `dest` is never an unchecked file."""
    part = dest + ".part"
    A.extract_member(archive, a.archive_member, part)
    try:
        _checker(a, root)(part)
    except MeshconfError as exc:
        os.replace(part, dest + ".invalid")
        raise MeshconfError(f"{a.relpath} from {archive} failed its check and was moved to {dest}.invalid: {exc}")\
            from None
    os.replace(part, dest)





def offline(flag: bool = False) -> bool:
    return flag or os.environ.get(A.ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def ensure(names, root=None, offline_flag: bool = False, progress: bool = True, log=print) -> dict[str, str]:
    """Paths of `names`, fetching the missing public files first (with `meshconf fetch`'s resume and checks), in
    one announced step; `--offline` / $MESHCONF_OFFLINE turn fetching off. What cannot be fetched (SMPL needs a
    registration), or what failed to download, ends in `MissingFiles`: one line per file with its next step."""
    from ..errors import MissingFiles

    root = A.data_dir(root)
    absent = A.missing(names, root)
    failed: dict[str, str] = {}
    fetchable = [a for a in absent if a.downloadable]
    if fetchable and not offline(offline_flag):
        log(f"meshconf: fetching {len(fetchable)} missing public model file(s) into {root} "
            f"({', '.join(a.relpath for a in fetchable)}); --offline or {A.ENV_OFFLINE}=1 turns this off")
        for a in fetchable:
            try:
                fetch_assets([a], root, mirror=os.environ.get(A.ENV_MIRROR) or None, progress=progress,
                             log=lambda m: None)
            except MeshconfError as exc:
                failed[a.name] = str(exc)
        absent = A.missing(names, root)
    if absent:
        lines = []
        for a in absent:
            if a.name in failed:
                lines.append(f"missing {a.relpath}: the download failed ({failed[a.name]}); run the same command "
                             f"again when online, or `meshconf fetch --data-dir {root} --mirror URL`")
            elif a.downloadable:
                lines.append(f"missing {a.relpath} in {root}: `meshconf fetch --data-dir {root}` downloads it "
                             f"({a.url})")
            else:
                lines.append(f"missing {a.relpath} in {root}: {a.instructions}; then run the same command again")
        raise MissingFiles(lines)
    return {n: A.locate(n, root) for n in names}
