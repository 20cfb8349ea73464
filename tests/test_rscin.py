import numpy as np
import torch

from musc_online.rscin import neighbourhood_average, rscin


def reference_rscin(scores: np.ndarray, cls: np.ndarray, k_list) -> np.ndarray:
    """The authors' MMO written out with explicit masks, as the oracle."""
    s = (scores - scores.min()) / (scores.max() - scores.min())
    w = cls @ cls.T
    out = []
    for k in k_list:
        mask = np.zeros_like(w)
        for i, row in enumerate(w):
            keep = np.argsort(row)[-k:]
            mask[i, keep] = row[keep]
        out.append((mask / mask.sum(axis=1, keepdims=True)) @ s)
    return np.mean(out, axis=0)


def test_matches_reference_rscin(golden):
    ours = rscin(torch.from_numpy(golden["image_score"]), torch.from_numpy(golden["cls"]), tuple(golden["k_list"]))
    np.testing.assert_allclose(ours.numpy(), golden["rscin"], rtol=1e-4, atol=1e-6)


def test_matches_oracle_on_random_sets():
    rng = np.random.default_rng(3)
    cls = rng.normal(size=(15, 8)).astype(np.float32)
    cls /= np.linalg.norm(cls, axis=1, keepdims=True)
    scores = rng.random(15)
    ours = rscin(torch.from_numpy(scores), torch.from_numpy(cls), (1, 4, 7))
    np.testing.assert_allclose(ours.numpy(), reference_rscin(scores, cls, (1, 4, 7)), rtol=1e-5)


def test_zero_in_k_list_disables_rescoring():
    scores = torch.tensor([0.2, 0.9, 0.4])
    assert torch.equal(rscin(scores, torch.eye(3), (0,)), scores)


def test_k_one_keeps_normalised_own_score():
    scores = torch.tensor([1.0, 3.0, 2.0])
    out = rscin(scores, torch.eye(3), (1,))
    torch.testing.assert_close(out, torch.tensor([0.0, 1.0, 0.5]))


def test_k_larger_than_the_set_uses_everything():
    similarity = torch.ones(2, 3)
    out = neighbourhood_average(similarity, torch.tensor([0.0, 0.3, 0.6]), (10,))
    torch.testing.assert_close(out, torch.tensor([0.3, 0.3]))
