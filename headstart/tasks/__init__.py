"""Tasks: what question a data set asks, and everything that differs between the kinds of question.

`binary` (two classes, a threshold on class 1), `multiclass` (argmax) and `multilabel` (L findings, each a
sigmoid with its own mask and threshold). Heads, evaluation and the studies ask the Task instead of branching
on the number of classes: how many outputs, which link and loss, which thresholds, which metrics, which
stratification key. `make_task(kind, names, y, mask)` builds one; `tasks.core` holds what stage one may use.
"""

from headstart.lazy import lazy_exports

TASK_KINDS = ("binary", "multiclass", "multilabel")  # import-free, so the CLI can offer them as choices

_EXPORTS = {
    "Task": "headstart.tasks.core",
    "multilabel_task": "headstart.tasks.factory",
    "make_task": "headstart.tasks.factory",
    "task_for_classes": "headstart.tasks.factory",
    "task_for_proba": "headstart.tasks.factory",
    "BinaryTask": "headstart.tasks.single",
    "MulticlassTask": "headstart.tasks.single",
    "MultilabelTask": "headstart.tasks.multilabel",
}
__all__ = ["TASK_KINDS", *_EXPORTS]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
