"""Feature banks for the online scorer: judges (confirmed good frames) and known defects.

Each item has an id, an L2-normalised image-level feature searched by cosine similarity through an exact
FAISS inner-product index (``IndexIDMap2``, so an item can be removed in place; on a CUDA line with faiss GPU
support a GPU copy answers the searches, see ``faiss_index``), and optionally its LNAMD patch features per
scoring set. Image and patch features are also kept stacked by row on the bank's device, so that gathering the
references for a frame is one ``index_select`` per array, with no copy to the host.

A saved bank is ``features.npz`` plus ``meta.json``; the index is rebuilt from the features on load (an
``index.faiss`` that older versions wrote beside them is ignored: native index bytes are never read).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from musc_online.atomic import replaced_folder, restored
from musc_online.backbones import canonical_backbone
from musc_online.device import to_device

from . import faiss_index

FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"  # written by older versions; ignored when present
FEATURES_FILE = "features.npz"
META_FILE = "meta.json"
_META_KEYS = frozenset({"format_version", "dim", "ids", "labels", "scores", "num_sets", "patch_shapes", "fingerprint"})


class BankMismatchError(ValueError):
    """A saved bank was built with other settings (backbone, image size, layers, ...) than the caller expects."""


@dataclass(slots=True)
class _Entry:
    """Where an item lives (its FAISS key, its patch row), and what the operator or scorer said about it."""

    key: int
    row: int
    label: str | None
    score: float | None


@dataclass(frozen=True)
class BankContents:
    """A bank's items as plain arrays (image features, patch features per scoring set) and JSON metadata."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, object]

    def write(self, folder: Path) -> None:
        """Write features.npz and meta.json to ``folder`` atomically, replacing an older save."""
        folder = Path(folder)
        if folder.exists() and not (folder / META_FILE).is_file() and (not folder.is_dir() or any(folder.iterdir())):
            raise FileExistsError(f"refusing to save a bank over {folder}: it exists and is not a saved bank")
        with replaced_folder(folder) as staging:
            with open(staging / FEATURES_FILE, "wb") as file:
                np.savez(file, **self.arrays)
            (staging / META_FILE).write_text(json.dumps(self.meta, indent=1), encoding="utf-8")


class FeatureBank:
    """Items searchable by image-feature cosine similarity, with optional patch features for MSM scoring.

    Patch rows are kept compact by swap-removal, so storage order differs from insertion order; ``ids()``,
    ``image_features()`` and saved banks use insertion order.
    """

    def __init__(self, dim: int, device: torch.device | str = "cpu") -> None:
        if dim < 1:
            raise ValueError(f"feature dimension must be positive, got {dim}")
        self.dim = dim
        self.device = torch.device(device)
        self._patch_dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self._index = faiss_index.build_id_index(dim)
        self._gpu_search: faiss_index.GpuSearch | None = None  # built at a search after the bank last changed
        self._images = torch.empty((0, dim), dtype=torch.float32, device=self.device)  # by storage row
        self._items: dict[str, _Entry] = {}  # insertion-ordered
        self._by_key: dict[int, str] = {}  # FAISS key -> id
        self._next_key = 0
        self._row_ids: list[str] = []  # patch storage row -> id
        self._patch_shapes: list[tuple[int, int]] | None = None  # fixed by the first item; [] = no patches
        self._patches: list[torch.Tensor] = []  # per scoring set: (capacity, P_s, C_s) on self.device

    @property
    def patch_shapes(self) -> list[tuple[int, int]]:
        """(P_s, C_s) of each scoring set; empty when the bank holds no patch features (or no items yet)."""
        return list(self._patch_shapes or [])

    def __len__(self) -> int:
        return len(self._row_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def ids(self) -> list[str]:
        """Item ids in insertion order."""
        return list(self._items)

    def label(self, item_id: str) -> str | None:
        """The item's label (e.g. a defect name), or None."""
        return self._entry(item_id).label

    def score(self, item_id: str) -> float | None:
        """The item's score when it was added, or None."""
        return self._entry(item_id).score

    def add(
        self,
        item_id: str,
        image_feature: torch.Tensor | np.ndarray,
        patch_features: Sequence[torch.Tensor] | None = None,
        label: str | None = None,
        score: float | None = None,
    ) -> None:
        """Add one item; its image feature is re-normalised, its patch features copied to the bank's device."""
        if item_id in self._items:
            raise ValueError(f"the bank already holds an item with id {item_id!r}")
        vector = self._unit_rows(image_feature, f"image feature of {item_id!r}")
        if len(vector) != 1:
            raise ValueError(f"image feature of {item_id!r} must be one ({self.dim},) vector, got {len(vector)} rows")
        patches = [torch.as_tensor(p) for p in patch_features or []]
        shapes = [tuple(p.shape) for p in patches]
        if self._patch_shapes is None:
            if any(len(shape) != 2 for shape in shapes):
                raise ValueError(f"patch features of {item_id!r} must be (P, C) per scoring set, got {shapes}")
            self._patch_shapes = shapes
            self._patches = [torch.empty((0, *s), dtype=self._patch_dtype, device=self.device) for s in shapes]
        elif shapes != self._patch_shapes:
            raise ValueError(
                f"item {item_id!r} has {_describe(shapes)}, but this bank's items have {_describe(self._patch_shapes)}"
            )
        row, key = len(self), self._next_key
        self._reserve(row + 1)
        for store, patch in zip(self._patches, patches, strict=True):
            store[row].copy_(patch)
        self._images[row] = torch.from_numpy(vector[0])
        self._index.add_with_ids(vector, np.array([key], dtype=np.int64))
        self._gpu_search = None
        self._next_key += 1
        self._items[item_id] = _Entry(key, row, label, None if score is None else float(score))
        self._by_key[key] = item_id
        self._row_ids.append(item_id)

    def remove(self, item_id: str) -> None:
        """Remove an item from the index in place; the last patch row moves into its row."""
        entry = self._entry(item_id)
        self._index.remove_ids(np.array([entry.key], dtype=np.int64))
        last = len(self) - 1
        if entry.row != last:
            moved = self._row_ids[last]
            for store in (self._images, *self._patches):
                store[entry.row] = store[last]
            self._row_ids[entry.row] = moved
            self._items[moved].row = entry.row
        self._row_ids.pop()
        del self._items[item_id], self._by_key[entry.key]
        self._gpu_search = None

    def image_features(self, ids: Sequence[str] | None = None) -> torch.Tensor:
        """(n, D) float32 image features on the bank's device, for ``ids`` in order (default: all, insertion order):
        one gather, no host copy."""
        rows = to_device(self._rows(self.ids() if ids is None else ids), torch.long, self.device)
        return self._images.index_select(0, rows)

    def patch_features(self, ids: Sequence[str]) -> list[torch.Tensor]:
        """Per scoring set, the (len(ids), P_s, C_s) patch features of ``ids`` in that order, on the bank's device."""
        if not self._patch_shapes:
            raise ValueError("this bank holds no patch features (its items were added without them)")
        rows = to_device(self._rows(ids), torch.long, self.device)
        return [store.index_select(0, rows) for store in self._patches]

    def search(self, query: torch.Tensor | np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """For each (D,) or (Q, D) query row, the ``k`` most similar items as (id, cosine), best first."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        queries = self._unit_rows(query, "query")
        if not len(self):
            return [[] for _ in queries]
        similarities, keys = self._searcher().search(queries, min(k, len(self)))
        return [
            [(self._by_key[int(key)], float(s)) for s, key in zip(sims, found, strict=True) if key >= 0]
            for sims, found in zip(similarities, keys, strict=True)
        ]

    def _searcher(self) -> faiss_index.FaissIndex | faiss_index.GpuSearch:
        """The CPU index, or on a CUDA line with faiss GPU support its GPU copy (rebuilt after changes)."""
        if not faiss_index.searches_on_gpu(self.device.type):
            return self._index
        if self._gpu_search is None:
            keys = np.array([self._items[item_id].key for item_id in self._row_ids], dtype=np.int64)
            rows = self._images[: len(self)].cpu().numpy()
            self._gpu_search = faiss_index.GpuSearch(rows, keys, self.device.index or 0)
        return self._gpu_search

    def contents(self, fingerprint: Mapping[str, object]) -> BankContents:
        """A copy of the bank's items as plain arrays and metadata, in insertion order, ready for ``write``.

        ``fingerprint`` names what the features depend on (backbone, image size, layers, r_list, ...);
        ``load`` compares it so that a bank from other settings is refused.
        """
        ids = self.ids()
        rows = self._rows(ids)
        arrays = {"image_features": self.image_features(ids).cpu().numpy()}
        row_tensor = torch.tensor(rows, dtype=torch.long, device=self.device)
        for s, store in enumerate(self._patches):
            arrays[f"patches_{s}"] = store.index_select(0, row_tensor).cpu().numpy()
        meta = {
            "format_version": FORMAT_VERSION,
            "dim": self.dim,
            "ids": ids,
            "labels": [self._items[i].label for i in ids],
            "scores": [self._items[i].score for i in ids],
            "num_sets": len(self._patches),
            "patch_shapes": self._patch_shapes,
            "fingerprint": _plain(fingerprint),
        }
        return BankContents(arrays, meta)

    def save(self, folder: Path, fingerprint: Mapping[str, object]) -> None:
        """Write the bank to ``folder`` (features.npz, meta.json) atomically, replacing an older save."""
        self.contents(fingerprint).write(folder)

    @classmethod
    def load(
        cls,
        folder: Path,
        expected_fingerprint: Mapping[str, object] | None = None,
        device: torch.device | str = "cpu",
    ) -> FeatureBank:
        """Read a bank written by ``save``; BankMismatchError if its fingerprint differs from the expected one."""
        folder = restored(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no saved bank at {folder}")
        for name in (META_FILE, FEATURES_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"saved bank {folder} lacks {name}")
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        missing = _META_KEYS - set(meta)
        if missing:
            raise ValueError(f"{folder / META_FILE} lacks {sorted(missing)}")
        if meta["format_version"] != FORMAT_VERSION:
            raise ValueError(f"{folder} has bank format {meta['format_version']}; this version reads {FORMAT_VERSION}")
        if expected_fingerprint is not None:
            check_fingerprint(f"the bank at {folder}", meta["fingerprint"], expected_fingerprint)
        dim, ids = meta["dim"], meta["ids"]
        n = len(ids)
        shapes = None if meta["patch_shapes"] is None else [tuple(s) for s in meta["patch_shapes"]]
        if len(set(ids)) != n or len(meta["labels"]) != n or len(meta["scores"]) != n:
            raise ValueError(f"{folder / META_FILE}: ids must be unique, with one label and one score each")
        if meta["num_sets"] != len(shapes or []):
            raise ValueError(f"{folder / META_FILE}: num_sets {meta['num_sets']} disagrees with patch_shapes {shapes}")

        with np.load(folder / FEATURES_FILE, allow_pickle=False) as data:
            image = np.ascontiguousarray(data["image_features"], dtype=np.float32)
            patches = [data[f"patches_{s}"] for s in range(meta["num_sets"])]
        expected_shapes = [(n, dim)] + [(n, *s) for s in shapes or []]
        found_shapes = [image.shape] + [p.shape for p in patches]
        if found_shapes != expected_shapes:
            raise ValueError(
                f"{folder / FEATURES_FILE} holds arrays of shapes {found_shapes}; meta.json says {expected_shapes}"
            )
        bank = cls(dim, device)
        bank._patch_shapes = shapes
        bank._patches = [torch.from_numpy(p).to(bank.device, bank._patch_dtype) for p in patches]
        bank._images = torch.from_numpy(image).to(bank.device)
        if n:
            bank._index.add_with_ids(image, np.arange(n, dtype=np.int64))
        bank._next_key = n
        bank._by_key = dict(enumerate(ids))
        bank._row_ids = list(ids)
        bank._items = {
            item_id: _Entry(row, row, label, score)
            for row, (item_id, label, score) in enumerate(zip(ids, meta["labels"], meta["scores"], strict=True))
        }
        return bank

    def _entry(self, item_id: str) -> _Entry:
        """The item's entry; KeyError naming the id when the bank does not hold it."""
        try:
            return self._items[item_id]
        except KeyError:
            raise KeyError(f"the bank holds no item with id {item_id!r}") from None

    def _rows(self, ids: Sequence[str]) -> list[int]:
        """Storage rows of ``ids``, in order."""
        return [self._entry(item_id).row for item_id in ids]

    def _unit_rows(self, features: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
        """``features`` as contiguous float32 (Q, D) rows of unit length, the form FAISS searches by cosine."""
        given = torch.as_tensor(features)
        rows = given.detach().to("cpu", torch.float32)
        rows = rows.unsqueeze(0) if rows.ndim == 1 else rows
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"{what} has shape {tuple(given.shape)}; this bank holds {self.dim}-dimensional features")
        if not torch.isfinite(rows).all():
            raise ValueError(f"{what} has non-finite values")
        return np.ascontiguousarray(F.normalize(rows, dim=1).numpy())

    def _reserve(self, needed: int) -> None:
        """Grow the row stores (image and patch features) to hold ``needed`` rows, by half again at least, so adds
        stay amortised O(1)."""
        capacity = len(self._images)
        if needed <= capacity:
            return
        capacity = max(needed, capacity + capacity // 2, 16)
        used = len(self)
        grown = [store.new_empty((capacity, *store.shape[1:])) for store in (self._images, *self._patches)]
        for store, old in zip(grown, (self._images, *self._patches), strict=True):
            store[:used] = old[:used]
        self._images, *self._patches = grown


def _describe(shapes: Sequence[tuple[int, ...]]) -> str:
    """Patch-feature layout in words, for error messages."""
    return f"{len(shapes)} scoring sets of (P, C) shapes {list(shapes)}" if shapes else "no patch features"


def _plain(fingerprint: Mapping[str, object]) -> dict[str, object]:
    """The fingerprint as JSON stores it (tuples become lists, other objects strings), so comparisons agree."""
    return json.loads(json.dumps(dict(fingerprint), sort_keys=True, default=str))


def _renames_resolved(fingerprint: Mapping[str, object]) -> dict[str, object]:
    """The fingerprint with an old backbone name replaced by the registered one, so that a rename strands nothing."""
    name = fingerprint.get("backbone")
    try:
        return {**fingerprint, "backbone": canonical_backbone(name)} if isinstance(name, str) else dict(fingerprint)
    except ValueError:  # no backbone of that name, old or new: compared as saved, and reported as differing
        return dict(fingerprint)


def check_fingerprint(what: str, saved: Mapping[str, object], expected: Mapping[str, object]) -> None:
    """Raise BankMismatchError naming ``what`` and each key whose saved and expected values differ (old backbone
    names count as their new ones)."""
    saved, expected = _renames_resolved(saved), _renames_resolved(_plain(expected))
    absent = object()
    differences = [
        f"{key}: saved {_shown(saved, key)}, expected {_shown(expected, key)}"
        for key in sorted(saved.keys() | expected.keys())
        if saved.get(key, absent) != expected.get(key, absent)
    ]
    if differences:
        raise BankMismatchError(f"{what} was built with other settings: " + "; ".join(differences))


def _shown(fingerprint: dict[str, object], key: str) -> str:
    """A fingerprint value for an error message, or "absent"."""
    return repr(fingerprint[key]) if key in fingerprint else "absent"
