"""One error hierarchy for the whole library.

Library code raises these; only `headstart.cli` maps them to click exceptions and exit codes.
Messages are one line: what was found, what was expected, and what to do.
"""


class HeadstartError(Exception):
    """Base class of every error headstart raises on purpose. Exit code 1 at the CLI."""


class DataError(HeadstartError):
    """Input images, folders, manifests or labels are missing or malformed."""


class CacheError(HeadstartError):
    """A feature cache is missing, unreadable, incomplete or of an unknown format."""


class CacheMismatchError(CacheError):
    """A cache (or partial extraction) exists but was made for a different request."""


class WeightsError(HeadstartError):
    """Pretrained weights cannot be found, downloaded or loaded."""


class DependencyError(HeadstartError):
    """An optional extra (timm, torchxrayvision, transformers...) that a request needs is not installed."""


class ConfigError(HeadstartError):
    """An option or configuration value is invalid. Exit code 2 at the CLI (a usage error)."""


class TrainingError(HeadstartError):
    """Training diverged (NaN/Inf loss) or cannot continue; the last good checkpoint is kept."""


class CheckpointError(HeadstartError):
    """A fine-tune checkpoint is unreadable, foreign, or was made for another configuration."""


class ExportError(HeadstartError):
    """A model cannot be exported to ONNX, or its exported graph does not compute what the PyTorch model does."""


def one_line(exc: BaseException, *, limit: int = 160) -> str:
    """The first line of an exception's message (its type name when empty), for the one-line error contract."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
