"""Fitted models on disk, published atomically and noticed by running workers.

A model is written whole into its own folder, ``<models>/<kind>@<stamp>/``, which is never
changed afterwards; then the symlink ``<models>/<kind>`` is swapped to it in one rename
(``os.replace``). A reader resolves the link once and reads every file of that folder, so
it loads one version whole, never half of an old and half of a new one; its token (the
folder name) tells a worker that a newer model was published. Older versions are deleted
once superseded for GRACE_S (beyond the newest KEEP), so a worker still loading one finds
it. ``store.models_path`` may be a folder shared by several machines (any file system with
symlinks and atomic rename).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

# Versions kept per model (the current one included), and how long an older one stays
# after it was superseded (a worker that began loading it must be able to finish).
KEEP = 3
GRACE_S = 600.0
SEP = "@"


def publish(final: Path, write: Callable[[Path], None]) -> Path:
    """``write(folder)`` fills a new version folder; then ``final`` (a symlink) points to
    it. A failed or killed write leaves the served model as it was. Returns the folder."""
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.time_ns()}-{os.getpid()}"
    tmp = parent / f".{final.name}{SEP}{stamp}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    version = parent / f"{final.name}{SEP}{stamp}"
    tmp.rename(version)
    link = parent / f".{final.name}.link-{stamp}"
    os.symlink(version.name, link)  # relative: the models folder may be mounted elsewhere
    if final.is_dir() and not final.is_symlink():
        # A model saved before versioned folders: keep it as a version of its own (the one
        # moment a reader may miss it is this rename, once per model).
        final.rename(parent / f"{final.name}{SEP}0-legacy")
    os.replace(link, final)
    prune(final)
    return version


def versions(final: Path) -> list[Path]:
    """Published version folders of ``final``, oldest first."""
    prefix = final.name + SEP

    found = [p for p in final.parent.glob(f"{prefix}*") if p.is_dir()]
    return sorted(found, key=_stamp_ns)


def _stamp_ns(folder: Path) -> int:
    head = folder.name.rsplit(SEP, 1)[-1].split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def prune(
    final: Path, keep: int = KEEP, grace_s: float = GRACE_S, now: float | None = None
) -> None:
    """Delete old versions: beyond the newest ``keep``, and superseded more than
    ``grace_s`` ago (a worker may still be loading one superseded just now). Never the
    current one."""
    now = time.time() if now is None else now
    current = resolve(final)
    found = versions(final)
    for older, newer in zip(found[: max(0, len(found) - keep)], found[1:], strict=False):
        superseded_s = now - _stamp_ns(newer) / 1e9
        if older != current and superseded_s > grace_s:
            shutil.rmtree(older, ignore_errors=True)


def resolve(final: Path) -> Path | None:
    """The folder to read ``final``'s model from: the version its link names, or a folder
    saved before versioning; None when nothing is published."""
    if final.is_symlink():
        return final.parent / os.readlink(final)
    if final.is_dir():
        return final
    return None


def token(final: Path) -> str | None:
    """Cheap (one readlink or stat): changes whenever a new version is published."""
    try:
        return "v:" + os.readlink(final)
    except FileNotFoundError:
        return None
    except OSError:  # a plain folder from before versioning
        try:
            return f"dir:{os.stat(final / 'provenance.json').st_mtime_ns}"
        except OSError:
            return f"dir:{os.stat(final).st_mtime_ns}" if final.exists() else None


def snapshot(final: Path) -> tuple[str | None, Path | None]:
    """The token and the folder of the current version, from one read of the link (so the
    folder is the version the token names, even while a new one is published)."""
    tok = token(final)
    if tok is not None and tok.startswith("v:"):
        return tok, final.parent / tok[2:]
    return tok, resolve(final)
