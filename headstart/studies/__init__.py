"""Questions asked of a cache, built only from the stages' public functions (`audit`: shortcuts and leakage)."""

