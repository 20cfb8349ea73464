"""Saved scorer state across a backbone rename: the alias table keeps a line's judges."""

from __future__ import annotations

import json

import numpy as np
import pytest

from musc_online import backbones
from musc_online.backbones import create_backbone
from musc_online.online.bank import BankMismatchError
from musc_online.online.judges import seed_judges
from musc_online.online.persistence import load, save
from musc_online.online.scorer import OnlineScorer
from musc_online.online.settings import OnlineSettings


def test_state_saved_under_an_old_backbone_name_loads_and_another_backbone_is_refused(tmp_path, monkeypatch):
    images = [np.full((64, 64, 3), 100 + i, dtype=np.uint8) for i in range(4)]
    scorer = OnlineScorer(create_backbone("test_random_vit"), OnlineSettings(window=4, judges_per_frame=2))
    seed_judges(scorer, images, [f"seed{i}" for i in range(4)])
    save(scorer, tmp_path / "state")
    state_file = tmp_path / "state" / "state.json"
    state = json.loads(state_file.read_text())
    state["fingerprint"]["backbone"] = "tiny_vit_before_the_rename"  # what an older release called it
    state_file.write_text(json.dumps(state))

    restored = OnlineScorer(scorer.backbone, OnlineSettings(window=4, judges_per_frame=2))
    with pytest.raises(BankMismatchError, match="saved 'tiny_vit_before_the_rename', expected 'test_random_vit'"):
        load(restored, tmp_path / "state")
    monkeypatch.setitem(backbones._ALIASES, "tiny_vit_before_the_rename", "test_random_vit")  # the rename's entry
    assert load(restored, tmp_path / "state")["judges"] == 4
