"""Online (per-frame) MuSc: rolling window, judge and defect banks, thresholds, the scorer."""
