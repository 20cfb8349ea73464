"""FeatureBank: cosine search against brute force, removal, patch gathering, atomic save and checked load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from musc_online.online import bank as bank_module
from musc_online.online.bank import BankMismatchError, FeatureBank

DIM = 16
SHAPES = [(6, 4), (6, 8), (3, 4)]  # (P_s, C_s) per scoring set: sets may differ in size
FINGERPRINT = {"backbone": "tiny-vit", "image_size": 64, "layers": (2, 4), "r_list": (1, 3)}


def _items(n: int, seed: int = 0) -> list[tuple[str, torch.Tensor, list[torch.Tensor]]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            f"frame-{i}",
            torch.nn.functional.normalize(torch.randn(DIM, generator=generator), dim=0),
            [torch.randn(shape, generator=generator) for shape in SHAPES],
        )
        for i in range(n)
    ]


def _filled(n: int = 30) -> tuple[FeatureBank, list[tuple[str, torch.Tensor, list[torch.Tensor]]]]:
    items = _items(n)
    bank = FeatureBank(DIM)
    for i, (item_id, image, patches) in enumerate(items):
        bank.add(item_id, image, patches, label=f"kind-{i % 3}" if i % 2 else None, score=0.1 * i)
    return bank, items


def _brute_force(items: list[tuple[str, torch.Tensor, list[torch.Tensor]]], query: torch.Tensor) -> list[str]:
    ids = [item_id for item_id, _, _ in items]
    features = np.stack([image.numpy() for _, image, _ in items]).astype(np.float64)
    cosine = features @ query.numpy().astype(np.float64) / np.linalg.norm(query.numpy())
    return [ids[j] for j in np.argsort(-cosine)]


def test_search_ranks_like_brute_force_cosine() -> None:
    bank, items = _filled()
    queries = torch.randn(4, DIM, generator=torch.Generator().manual_seed(7)) * 3  # unnormalised on purpose
    results = bank.search(queries, 5)
    assert len(results) == 4
    for query, found in zip(queries, results, strict=True):
        assert [item_id for item_id, _ in found] == _brute_force(items, query)[:5]
        similarities = [s for _, s in found]
        assert similarities == sorted(similarities, reverse=True)
        assert all(-1.0 - 1e-5 <= s <= 1.0 + 1e-5 for s in similarities)
    assert bank.search(items[3][1].numpy(), 1)[0][0][0] == "frame-3"  # a (D,) numpy query is one query


def test_search_edge_cases() -> None:
    assert FeatureBank(DIM).search(torch.ones(2, DIM), 3) == [[], []]
    bank, items = _filled(4)
    assert sorted(i for i, _ in bank.search(torch.ones(DIM), 10)[0]) == sorted(i for i, _, _ in items)
    with pytest.raises(ValueError, match="k must be"):
        bank.search(torch.ones(DIM), 0)
    with pytest.raises(ValueError, match="shape"):
        bank.search(torch.ones(DIM + 1), 1)


def test_the_index_is_the_only_copy_of_the_image_features_and_removal_keeps_it_in_place() -> None:
    bank, items = _filled(6)
    index = bank._index
    bank.remove("frame-3")
    assert bank._index is index and index.ntotal == 5  # removed in place, not rebuilt
    assert not any(isinstance(value, np.ndarray) for value in vars(bank).values())
    torch.testing.assert_close(bank.image_features(["frame-5"])[0], items[5][1], rtol=0, atol=1e-7)


def test_remove_keeps_everything_else_consistent() -> None:
    bank, items = _filled(12)
    for removed in ("frame-2", "frame-11", "frame-0"):  # middle, last and first rows
        bank.remove(removed)
    kept = [item for item in items if item[0] not in {"frame-2", "frame-11", "frame-0"}]
    assert bank.ids() == [item_id for item_id, _, _ in kept] and len(bank) == 9
    assert "frame-2" not in bank and "frame-3" in bank
    for _, image, _ in items:
        found = [item_id for item_id, _ in bank.search(image, 12)[0]]
        assert found == _brute_force(kept, image)
    gathered = bank.patch_features([item_id for item_id, _, _ in kept])
    for s in range(len(SHAPES)):
        torch.testing.assert_close(gathered[s], torch.stack([patches[s] for _, _, patches in kept]), rtol=0, atol=0)
    with pytest.raises(KeyError, match="frame-2"):
        bank.remove("frame-2")
    bank.add("frame-2", items[2][1], items[2][2])  # an id may come back after removal
    assert bank.ids()[-1] == "frame-2"


def test_patch_and_image_gather_follow_the_requested_order() -> None:
    bank, items = _filled(20)
    order = [17, 3, 3, 0, 12]
    gathered = bank.patch_features([f"frame-{i}" for i in order])
    assert [tuple(g.shape) for g in gathered] == [(len(order), *shape) for shape in SHAPES]
    for s in range(len(SHAPES)):
        expected = torch.stack([items[i][2][s] for i in order])
        torch.testing.assert_close(gathered[s], expected, rtol=0, atol=0)
        assert gathered[s].device == bank.device and gathered[s].dtype == torch.float32
    images = bank.image_features([f"frame-{i}" for i in order])
    torch.testing.assert_close(images, torch.stack([items[i][1] for i in order]))
    assert bank.image_features().shape == (20, DIM)
    with pytest.raises(KeyError, match="nope"):
        bank.patch_features(["frame-1", "nope"])


def test_add_refuses_duplicates_wrong_dims_and_inconsistent_patches() -> None:
    bank, items = _filled(2)
    with pytest.raises(ValueError, match="frame-1"):
        bank.add("frame-1", items[0][1], items[0][2])
    with pytest.raises(ValueError, match=f"{DIM}-dimensional"):
        bank.add("x", torch.ones(DIM + 2), items[0][2])
    with pytest.raises(ValueError, match=r"no patch features.*3 scoring sets"):
        bank.add("x", items[0][1])
    with pytest.raises(ValueError, match=r"\(6, 5\)"):
        bank.add("x", items[0][1], [torch.zeros(6, 5), *items[0][2][1:]])
    with pytest.raises(ValueError, match="non-finite"):
        bank.add("x", torch.full((DIM,), float("nan")), items[0][2])
    assert bank.ids() == ["frame-0", "frame-1"]  # nothing half-added

    image_only = FeatureBank(DIM)
    image_only.add("a", items[0][1], label="scratch")
    with pytest.raises(ValueError, match="no patch features"):
        image_only.patch_features(["a"])
    with pytest.raises(ValueError, match=r"3 scoring sets.*no patch features"):
        image_only.add("b", items[1][1], items[1][2])


def test_save_load_round_trip(tmp_path: Path) -> None:
    bank, _ = _filled(15)
    bank.remove("frame-4")  # storage order now differs from insertion order
    bank.save(tmp_path / "judges", FINGERPRINT)
    loaded = FeatureBank.load(tmp_path / "judges", expected_fingerprint=FINGERPRINT)
    ids = bank.ids()
    assert loaded.ids() == ids and loaded.patch_shapes == SHAPES
    assert [loaded.label(i) for i in ids] == [bank.label(i) for i in ids]
    assert [loaded.score(i) for i in ids] == [bank.score(i) for i in ids]
    torch.testing.assert_close(loaded.image_features(), bank.image_features(), rtol=0, atol=0)
    for mine, theirs in zip(bank.patch_features(ids), loaded.patch_features(ids), strict=True):
        torch.testing.assert_close(theirs, mine, rtol=0, atol=0)
    queries = torch.randn(3, DIM, generator=torch.Generator().manual_seed(3))
    assert loaded.search(queries, 6) == bank.search(queries, 6)
    loaded.add("new", torch.ones(DIM), [torch.zeros(shape) for shape in SHAPES])  # a loaded bank keeps growing
    assert loaded.search(torch.ones(DIM), 1)[0][0][0] == "new"
    with np.load(tmp_path / "judges" / "features.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["image_features", "patches_0", "patches_1", "patches_2"]
    assert sorted(p.name for p in (tmp_path / "judges").iterdir()) == ["features.npz", "meta.json"]  # no index bytes


def test_an_old_save_with_an_index_file_loads_and_ignores_it(tmp_path: Path) -> None:
    bank, _ = _filled(6)
    bank.save(tmp_path / "judges", FINGERPRINT)
    (tmp_path / "judges" / "index.faiss").write_bytes(b"native index bytes from an older version, never read")
    loaded = FeatureBank.load(tmp_path / "judges", FINGERPRINT)
    queries = torch.randn(2, DIM, generator=torch.Generator().manual_seed(4))
    assert loaded.ids() == bank.ids() and loaded.search(queries, 3) == bank.search(queries, 3)


class _CountingIndex:
    """Forwards to a FAISS index, counting the calls made into it."""

    def __init__(self, index: object) -> None:
        self.index, self.calls = index, 0

    def __getattr__(self, name: str) -> object:
        self.calls += 1
        return getattr(self.index, name)


def test_image_features_are_gathered_in_one_batch_without_asking_the_index_per_id() -> None:
    bank, items = _filled(12)
    bank.remove("frame-3")
    bank._index = _CountingIndex(bank._index)
    wanted = ["frame-11", "frame-0", "frame-7"]
    gathered = bank.image_features(wanted)
    expected = torch.stack([next(image for i, image, _ in items if i == item_id) for item_id in wanted])
    torch.testing.assert_close(gathered, torch.nn.functional.normalize(expected, dim=1))
    assert bank._index.calls == 0


def test_save_replaces_an_older_save_and_leaves_no_temporaries(tmp_path: Path) -> None:
    bank, _ = _filled(5)
    bank.save(tmp_path / "judges", FINGERPRINT)
    bank.remove("frame-0")
    bank.save(tmp_path / "judges", FINGERPRINT)
    assert [p.name for p in tmp_path.iterdir()] == ["judges"]
    assert FeatureBank.load(tmp_path / "judges").ids() == bank.ids()


def test_crash_mid_save_keeps_the_previous_bank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bank, _ = _filled(5)
    bank.save(tmp_path / "judges", FINGERPRINT)
    before = bank.ids()
    bank.remove("frame-1")

    def crash(*_: object, **__: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(bank_module.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        bank.save(tmp_path / "judges", FINGERPRINT)
    assert [p.name for p in tmp_path.iterdir()] == ["judges"]
    assert FeatureBank.load(tmp_path / "judges").ids() == before


def test_save_refuses_to_replace_a_folder_that_is_not_a_bank(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a saved bank"):
        _filled(2)[0].save(tmp_path, FINGERPRINT)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_fingerprint_mismatch_names_each_key(tmp_path: Path) -> None:
    _filled(3)[0].save(tmp_path / "judges", FINGERPRINT)
    other = {**FINGERPRINT, "backbone": "dinov2", "image_size": 336}
    with pytest.raises(BankMismatchError) as caught:
        FeatureBank.load(tmp_path / "judges", expected_fingerprint=other)
    message = str(caught.value)
    assert "backbone: saved 'tiny-vit', expected 'dinov2'" in message
    assert "image_size: saved 64, expected 336" in message
    assert "layers" not in message and "judges" in message
    assert isinstance(caught.value, ValueError)


def test_a_bank_saved_under_an_old_backbone_name_loads_under_the_new_one(tmp_path: Path) -> None:
    _filled(3)[0].save(tmp_path / "judges", {**FINGERPRINT, "backbone": "efficientnet-lite0"})
    renamed = {**FINGERPRINT, "backbone": "efficientnet_lite0"}
    assert len(FeatureBank.load(tmp_path / "judges", expected_fingerprint=renamed)) == 3
    with pytest.raises(BankMismatchError, match="backbone: saved 'efficientnet_lite0', expected 'ViT-L-14-336'"):
        FeatureBank.load(tmp_path / "judges", expected_fingerprint={**FINGERPRINT, "backbone": "ViT-L-14-336"})


def test_tampered_or_missing_files_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "judges"
    _filled(4)[0].save(folder, FINGERPRINT)
    meta = json.loads((folder / "meta.json").read_text())
    meta["ids"].append("ghost")
    meta["labels"].append(None)
    meta["scores"].append(None)
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"judges/features\.npz holds arrays of shapes"):
        FeatureBank.load(folder)

    _filled(4)[0].save(folder, FINGERPRINT)

    (folder / "features.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"judges.*features\.npz"):
        FeatureBank.load(folder)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FeatureBank.load(tmp_path / "nowhere")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_patch_store_is_half_precision_on_cuda(tmp_path: Path) -> None:
    items = _items(3)
    bank = FeatureBank(DIM, device="cuda")
    for item_id, image, patches in items:
        bank.add(item_id, image, patches)
    gathered = bank.patch_features(["frame-2", "frame-0"])
    assert all(g.dtype == torch.float16 and g.is_cuda for g in gathered)
    torch.testing.assert_close(gathered[0][0].float().cpu(), items[2][2][0].half().float())
    bank.save(tmp_path / "judges", FINGERPRINT)
    loaded = FeatureBank.load(tmp_path / "judges", FINGERPRINT, device="cuda")
    torch.testing.assert_close(loaded.patch_features(["frame-1"])[1], bank.patch_features(["frame-1"])[1])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_bank_searches_like_the_cpu_bank(tmp_path: Path) -> None:
    """On a CUDA line (on the GPU with faiss-gpu, else on the CPU) the answers equal the CPU bank's."""
    items = _items(300, seed=7)
    cpu, cuda = FeatureBank(DIM), FeatureBank(DIM, device="cuda")
    for item_id, image, patches in items:
        cpu.add(item_id, image, patches)
        cuda.add(item_id, image, patches)
    queries = torch.randn(20, DIM, generator=torch.Generator().manual_seed(8))
    for removed in (None, "frame-5", "frame-299"):
        if removed:
            cpu.remove(removed)
            cuda.remove(removed)
        found_cpu, found_cuda = cpu.search(queries, 10), cuda.search(queries, 10)
        assert [[i for i, _ in row] for row in found_cuda] == [[i for i, _ in row] for row in found_cpu]
        for row_cpu, row_cuda in zip(found_cpu, found_cuda, strict=True):
            np.testing.assert_allclose([s for _, s in row_cuda], [s for _, s in row_cpu], atol=1e-5)
