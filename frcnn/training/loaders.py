"""Pictures into batches: decoding, the model's input sizing and augmentation in DataLoader workers, in an order
set by (seed, epoch) alone, starting at any step of an epoch (for a resume)."""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from frcnn.core.errors import FrcnnError
from frcnn.core.files import decode_picture, read_bytes
from frcnn.runtimes.preprocess import input_tensor
from frcnn.training.augment import augment, picture_seed, training_transform
from frcnn.training.sets import LabelledSet, Sample


@dataclass
class Batch:
    """Pictures (RGB floats in 0..1), their targets, and the pictures that could not be read (with the reason)."""

    images: list[torch.Tensor]
    targets: list[dict[str, torch.Tensor]]
    failed: list[tuple[str, str]]

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory (DataLoader's pin_memory calls this), for copies to CUDA that overlap."""
        return Batch([image.pin_memory() for image in self.images],
                     [{key: value.pin_memory() for key, value in target.items()} for target in self.targets],
                     self.failed)


def read_picture(sample: Sample, oriented: bool) -> np.ndarray:
    """A sample's picture as BGR, decoded as the set's boxes expect (with or without EXIF orientation)."""
    return decode_picture(read_bytes(sample.path), sample.path, apply_orientation=oriented)


class TrainPictures(Dataset):
    """Training pictures keyed by (epoch, index): sized as inference sizes them, then augmented."""

    def __init__(self, labelled: LabelledSet, min_size: int, max_size: int, seed: int):
        self.samples = labelled.samples
        self.oriented = labelled.oriented
        self.min_size, self.max_size, self.seed = min_size, max_size, seed
        self.transform = training_transform()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        sample = self.samples[index]
        try:
            picture = read_picture(sample, self.oriented)
        except FrcnnError as error:
            return sample.path, str(error)
        # The same shrinking as at inference (frcnn.runtimes.preprocess), so training sees what detection sees.
        image, fx, fy = input_tensor(picture, self.min_size, self.max_size)
        boxes = torch.from_numpy(sample.boxes) / torch.tensor([fx, fy, fx, fy])
        labels = torch.from_numpy(sample.labels)
        image, boxes, labels = augment(self.transform, image, boxes, labels, picture_seed(self.seed, epoch, index))
        return image, {"boxes": boxes, "labels": labels}


class EpochOrder(Sampler):
    """One process's batches of an epoch, from step `start` on: a permutation drawn from (seed, epoch), cut in
    order. With `world` processes (data-parallel training), each step takes `world` consecutive batches, process
    `rank` the rank-th; every process then gets a full batch at every step (the last step wraps around to the
    first pictures), as each must join every gradient exchange."""

    def __init__(self, count: int, batch: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world: int = 1):
        self.count, self.batch, self.seed, self.epoch, self.start = count, batch, seed, epoch, start
        self.rank, self.world = rank, world

    def steps(self) -> int:
        return math.ceil(self.count / (self.batch * self.world))

    def __len__(self) -> int:
        return max(0, self.steps() - self.start)

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.count).tolist()
        for step in range(self.start, self.steps()):
            first = (step * self.world + self.rank) * self.batch
            picks = (order[first:first + self.batch] if self.world == 1 else
                     [order[position % self.count] for position in range(first, first + self.batch)])
            yield [(self.epoch, index) for index in picks]


def collate(items: list) -> Batch:
    good = [item for item in items if isinstance(item[1], dict)]
    failed = [item for item in items if not isinstance(item[1], dict)]
    return Batch([image for image, _ in good], [target for _, target in good], failed)


def _ignore_interrupts(_: int) -> None:
    # Ctrl-C (and a scheduler's SIGTERM) may reach the whole process group; the training process decides when to
    # stop and ends its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class TrainBatches:
    """The training set's batches for any epoch, from any step: one DataLoader per epoch."""

    def __init__(self, labelled: LabelledSet, batch: int, seed: int, workers: int, min_size: int, max_size: int,
                 pin_memory: bool = False, rank: int = 0, world: int = 1):
        self.pictures = TrainPictures(labelled, min_size, max_size, seed)
        self.batch, self.seed, self.workers, self.pin_memory = batch, seed, workers, pin_memory
        self.rank, self.world = rank, world  # this process's place among data-parallel ones
        self.steps_per_epoch = EpochOrder(len(labelled.samples), batch, seed, 0, world=world).steps()

    def epoch(self, epoch: int, start: int = 0) -> DataLoader:
        order = EpochOrder(len(self.pictures), self.batch, self.seed, epoch, start, self.rank, self.world)
        # Its own generator: the loader's base seed would otherwise be drawn from the global one, which the model's
        # box sampling uses.
        return DataLoader(self.pictures, batch_sampler=order, num_workers=self.workers, collate_fn=collate,
                          worker_init_fn=_ignore_interrupts, generator=torch.Generator(), pin_memory=self.pin_memory)


class ValPictures(Dataset):
    """Validation pictures as decoded BGR arrays (or the reason they could not be read), with their image ids."""

    def __init__(self, labelled: LabelledSet):
        self.samples = labelled.samples
        self.oriented = labelled.oriented

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        try:
            return sample.image_id, read_picture(sample, self.oriented), None
        except FrcnnError as error:
            return sample.image_id, None, str(error)


def _first(items: list):
    return items[0]


def val_loader(labelled: LabelledSet, workers: int) -> DataLoader:
    """The validation pictures one at a time, read ahead by `workers` processes."""
    return DataLoader(ValPictures(labelled), batch_size=1, num_workers=workers, collate_fn=_first,
                      worker_init_fn=_ignore_interrupts, generator=torch.Generator())
