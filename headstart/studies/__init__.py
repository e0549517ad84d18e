"""Questions asked of a cache, built only from the stages' public functions: `audit` (shortcuts and leakage),
`curve` (label efficiency) and `screen` (successive halving over backbones)."""
