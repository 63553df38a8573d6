"""The sdist of the installed django-tenants: the only distribution that ships its test
project. Downloaded and unpacked once into ``tests/dts_suite/.cache/``, then reused."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
DOWNLOAD_TIMEOUT_S = 600


class SdistError(RuntimeError):
    """The sdist could not be had or is not what the harness needs."""


def installed_version() -> str:
    return metadata.version("django-tenants")


def unpacked_sdist(version: str, cache: Path = CACHE) -> Path:
    """The unpacked sdist of ``version``: downloaded and unpacked on first use only."""
    _prepare(cache)
    target = cache / f"django_tenants-{version}"
    if not (target / "dts_test_project").is_dir():
        _unpack(_archive(version, cache), target)
    if not (target / "dts_test_project" / "manage.py").is_file():
        raise SdistError(f"{target} has no dts_test_project/manage.py")
    return target


def _prepare(cache: Path) -> None:
    """The cache ignores itself: git, and ruff (which follows .gitignore), never see the
    third-party code unpacked in it."""
    cache.mkdir(parents=True, exist_ok=True)
    ignore = cache / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")


def _archive(version: str, cache: Path) -> Path:
    found = _cached_archive(version, cache)
    if found:
        return found
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
        "--no-deps", f"django-tenants=={version}", "-d", str(cache),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
    found = _cached_archive(version, cache)
    if done.returncode != 0 or not found:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SdistError(f"pip download of django-tenants=={version} failed: {tail}")
    return found


def _cached_archive(version: str, cache: Path) -> Path | None:
    # Older sdists are named django-tenants-X.tar.gz, newer ones django_tenants-X.tar.gz.
    for name in (f"django_tenants-{version}.tar.gz", f"django-tenants-{version}.tar.gz"):
        if (cache / name).is_file():
            return cache / name
    return None


def _unpack(archive: Path, target: Path) -> None:
    """Unpack beside ``target`` and rename into place: a run that is interrupted (or one
    running at the same time) never sees half a tree."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack-") as scratch:
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")  # no links or paths out of the folder
        tops = [p for p in Path(scratch).iterdir() if p.is_dir()]
        if len(tops) != 1:
            raise SdistError(f"{archive.name} does not hold exactly one top folder")
        if target.exists():  # unpacked meanwhile by another run, or incomplete
            shutil.rmtree(target)
        tops[0].rename(target)
