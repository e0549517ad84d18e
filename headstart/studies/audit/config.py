"""What `headstart audit` runs, with the reason behind every default."""

from __future__ import annotations

from dataclasses import dataclass

from headstart.errors import ConfigError


@dataclass
class AuditConfig:
    """Options of the audit; the CLI exposes the first few, the rest are calibration constants kept in one place."""

    feature_set: str | None = None  # -b NAME; None = the first complete feature set
    seed: int = 0  # seeds every resample, shuffle, subsample and simulation
    n_boot: int = 1000  # bootstrap resamples behind each 95% interval (the same count `heads` uses)
    shuffle_repeats: int = 5  # label-shuffle floor: heads trained on independently shuffled labels
    power_sims: int = 200  # simulated test sets per candidate difference; power is then known to about +-3 points
    power_rho: float = 0.8  # assumed correlation of two models' test scores (two heads on one cache are ~0.7-0.9)
    flag_auroc_low: float = 0.6  # baseline / domain classifier: flag when the 95% interval's lower end is above this
    # near-duplicates: see the rule and its calibration in near_duplicates.py
    neighbours: int = 5  # candidates per val/test image; the 5th is the scale the others are judged against
    hash_max: int = 4  # bits: pixel evidence (copies of 224 px X-rays measured 0-2 bits)
    ratio_loose: float = 0.3  # distance ratio a hash match must also meet (copies <= 0.08, hash look-alikes >= 0.45)
    ratio_max: float = 0.15  # distance ratio of a match with weaker pixel evidence (non-copies measured >= 0.26)
    hash_loose: int = 10  # bits allowed beside ratio_max (copies of 64 px phantoms moved up to 8 bits)
    block_rows: int = 1024  # query rows per similarity block: 1024 x 100k float32 = 400 MB at most
    max_fit_rows: int = 20000  # training rows for the audit's own heads (a stratified subsample above this)
    C_grid: tuple[float, ...] = (0.01, 0.1, 1.0)  # logistic-regression strengths selected on val
    max_iter: int = 300  # lbfgs iterations of the audit's heads; shuffled-label fits need not converge to score chance
    fix: bool = False  # --fix: publish splits in which each near-duplicate group lives in one split (see fix.py)
    confirm_test: bool = False  # --yes: let --fix change the test split

    def validate(self) -> None:
        if self.n_boot < 1 or self.shuffle_repeats < 1 or self.power_sims < 10:
            raise ConfigError(f"n_boot {self.n_boot}, shuffle repeats {self.shuffle_repeats}, power sims "
                              f"{self.power_sims}: expected at least 1, 1 and 10")
        if self.confirm_test and not self.fix:
            raise ConfigError("--yes confirms what --fix does to the test split; pass --fix with it")
        if not 0.0 <= self.power_rho < 1.0:
            raise ConfigError(f"power_rho {self.power_rho} is outside [0, 1); expected a correlation such as 0.8")
