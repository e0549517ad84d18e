"""Plain records shared by every data source, the splitter, extraction and fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from headstart.errors import DataError

if TYPE_CHECKING:
    from headstart.data.imagemeta import ImageMeta

SPLITS = ("train", "val", "test")
TASKS = ("binary", "multiclass", "multilabel")


@dataclass(frozen=True)
class Sample:
    """One labelled image. Sources create these; the splitter fills in `split` where it is empty."""

    id: str  # stable, unique within a data set: path relative to DATA (or "train/00012" for an npz row)
    label: int  # index into the data set's `classes`
    split: str = ""  # "train" | "val" | "test", or "" when the source gives no split
    group: str = ""  # patient id for grouped splitting; "" when unknown
    path: str = ""  # absolute path of the file holding the image (the npz itself for npz rows)
    index: int = -1  # row inside an array file; -1 for one-image-per-file sources
    labels: tuple[int, ...] = ()  # multi-label only: one raw code per finding (labelcodes: 1, 0, -1, -2); label = 0


@dataclass
class SplitConfig:
    """How missing splits are carved. extract and finetune share it, so they derive identical splits."""

    val_fraction: float = 0.1  # carved from train when val is missing or too small
    test_fraction: float = 0.2  # carved from train when there is no test split
    min_val: int = 50  # a given val smaller than this (Kaggle has 16) is kept and topped up from train
    seed: int = 0  # seeds the grouped, stratified shuffle
    group_pattern: str | None = None  # regex on the file name giving the patient id


class ImageSource(Protocol):
    """What extraction and fine-tuning need from any data source."""

    root: str  # the DATA argument, resolved
    kind: str  # "folder" | "split-folder" | "manifest" | "npz" | "nih" | "chexpert" | "table"
    classes: list[str]  # class names; for a multi-label source the finding names, in column order
    samples: list[Sample]
    multilabel: bool  # samples carry `labels` (one raw code per finding) instead of one class index

    def raw_bytes(self, sample: Sample) -> bytes:
        """The stored bytes of one sample (the file, or the array row): hashed for duplicates, read for GPU decode."""
        ...

    def load(self, sample: Sample, *, min_size: int | None = None) -> Image.Image:
        """Decode one sample as an RGB PIL image. Raises DataError naming the file when it cannot.

        `min_size` lets large JPEGs decode at reduced scale (PIL draft mode) while the shorter side stays
        >= min_size; sources without a cheaper path ignore it.
        """
        ...

    def load_with_meta(self, sample: Sample, *, min_size: int | None = None) -> tuple[Image.Image, "ImageMeta"]:
        """`load` plus the sample's `headstart.data.imagemeta.ImageMeta`, from the same decode."""
        ...


@dataclass
class Dataset:
    """A source after splitting: what the cache stores as /samples."""

    source: ImageSource
    samples: list[Sample]  # every sample has split set
    classes: list[str]
    duplicates: dict = field(default_factory=dict)  # content-hash duplicates across splits, for the record

    @property
    def task(self) -> str:
        return task_of(self.classes, multilabel=getattr(self.source, "multilabel", False))


def task_of(classes: list[str], *, multilabel: bool) -> str:
    """`binary`, `multiclass` or `multilabel`: the cache's root attribute `task` and every record's `dataset.task`."""
    if multilabel:
        return "multilabel"
    return "binary" if len(classes) <= 2 else "multiclass"
