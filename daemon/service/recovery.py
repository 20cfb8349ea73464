"""How a line's scorer comes up: the backbone built and warmed, the care area set, then the line's state brought back
after a stop or a crash (frames left undecided refused, saved judges, window and band loaded or judges seeded,
corrections the saved state lacks applied again). Runs once per start, after the line is claimed and before its
sockets bind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from daemon.config import DaemonConfig
from daemon.service.control import seed_judges
from daemon.service.corrections import CorrectionApplier
from daemon.store import Store
from musc_online.backbones import create_backbone
from musc_online.online.persistence import has_state, load
from musc_online.online.scorer import OnlineScorer

log = logging.getLogger("musc.daemon")


def build_scorer(config: DaemonConfig) -> OnlineScorer:
    """The line's scorer on its device, its backbone warmed up so that the first frame is not slower, its care area
    set (read first: an unusable one is a ConfigError naming the setting before the backbone loads)."""
    care = config.care_area()
    model = config.model
    backbone = create_backbone(
        model.backbone, image_size=model.image_size, layers=model.layers or None, weights=model.weights or None
    )
    device = config.device()
    backbone = backbone.to(device)
    size = backbone.image_size
    backbone.extract([np.zeros((size, size, 3), np.uint8)], device)
    scorer = OnlineScorer(backbone, config.online, device)
    scorer.care_area = care
    return scorer


def recover(
    config: DaemonConfig,
    scorer: OnlineScorer,
    scorer_lock: threading.Lock,
    store: Store,
    corrections: CorrectionApplier,
    snapshot: Callable[[], Path],
) -> dict[str, int]:
    """Refuse frames a crash left undecided, restore the scorer's state, seed judges, apply corrections; the
    counts of each, also logged and recorded as the line's ``start`` event."""
    line = config.line
    lost = store.refuse_pending(line, "the daemon stopped before deciding this frame")
    recovered: dict[str, int] = {"refused_after_crash": lost}
    if has_state(config.state_dir):
        recovered.update(load(scorer, config.state_dir))
    elif config.online.judges_dir:
        recovered["seeded_judges"] = seed_judges(scorer, scorer_lock, store, line, config.online.judges_dir)
    done = corrections.recover()
    recovered["corrections_applied"] = sum("error" not in c for c in done)
    recovered["corrections_failed"] = len(done) - recovered["corrections_applied"]
    if recovered.get("seeded_judges") or done:
        snapshot()
    message = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in recovered.items())
    store.log_event(line, "start", f"line {line} started; recovered {message}", recovered)
    log.info("recovered state: %s", message, extra={"recovered": recovered})
    return recovered
