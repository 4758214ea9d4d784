"""Training data, decoded once into memory.

A split is read as :mod:`segapp.metrics.labelled_data` reads it for scoring (slices with masks, or
labelled volumes; the same readers, the same errors). Training slices are resized once to the
model's input size and kept as uint8 tensors (on the GPU when they fit): augmentation then runs in
batches on the device, with no DataLoader worker processes on any OS. For a 2.5D model each slice
is still stored once; ``TrainSet.neighbours`` says which slices fill its channels, and a batch
gathers them. Validation slices (:func:`segapp.metrics.labelled_data.load_valid_set`) are kept at
their own size, so validation scores them exactly as the inference service would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from segapp.metrics.labelled_data import Pair, labelled_slices, split_files
from segapp.model.context import placed_context_indices
from segapp.model.processing import ProcessingConfig, resize_gray


@dataclass
class TrainSet:
    """Training slices at the model input size, in memory.

    Attributes:
        images: (N, H, W) uint8 grayscale at the model input size.
        masks: (N, H, W) uint8 class ids, resized with nearest neighbour.
        neighbours: (N, 3) int64 indices into ``images`` of the slices that fill each input
            channel (:func:`segapp.model.context.placed_context_indices`; a 2D model's rows are
            the slice itself three times).
    """

    images: torch.Tensor
    masks: torch.Tensor
    neighbours: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def nbytes(self) -> int:
        return self.images.nelement() + self.masks.nelement()  # the pixels; neighbours are a few bytes a slice

    def to(self, device: torch.device | str) -> TrainSet:
        return TrainSet(self.images.to(device), self.masks.to(device), self.neighbours.to(device))

    def inputs(self, index: torch.Tensor, processing: ProcessingConfig) -> torch.Tensor:
        """The model inputs of the slices ``index``, gathered now: (B, H, W) uint8 slices for a 2D
        model, (B, 3, H, W) uint8 channel stacks for a 2.5D one."""
        if not processing.is_2_5d:
            return self.images[index]
        return self.images[self.neighbours[index]]  # (B, 3, H, W)


def load_train_set(split_dir: str | Path, config: ProcessingConfig, *, progress: bool = False) -> TrainSet:
    """Decode a training split once, resized to the model input size.

    Images go through the same reader and resize as inference (rounded back to uint8 to
    keep the footprint at 2 bytes per pixel pair); masks use nearest neighbour. The neighbours
    of a 2.5D ``config`` come from the slices' places: competition names in the slices layout
    (a slice whose neighbour is not in the split is at the edge), indices in a volume.

    Raises:
        DataError: The split is in neither layout, or a file in it is unusable.
    """
    size = (config.height, config.width)
    # A slice split's size is known before decoding: fill one preallocated tensor, so a large data set
    # never sits in memory twice. A volume split's is not (slices per volume): stack at the end.
    files = split_files(split_dir)
    count = len(files) if files and isinstance(files[0], Pair) else None
    buffers = (torch.empty((count, *size), dtype=torch.uint8), torch.empty((count, *size), dtype=torch.uint8)) \
        if count is not None else None
    images, masks, places = [], [], []
    for index, (_, place, scan, mask) in enumerate(labelled_slices(files, progress, f"decoding {Path(split_dir).name}")):
        gray = resize_gray([scan.pixels], config)  # (1, 1, H, W) float 0..255
        image = gray[0, 0].round().clamp(0, 255).to(torch.uint8)
        mask_t = F.interpolate(torch.from_numpy(mask)[None, None].float(), size=size, mode="nearest")[0, 0].to(torch.uint8)
        if buffers is not None:
            buffers[0][index], buffers[1][index] = image, mask_t
        else:
            images.append(image)
            masks.append(mask_t)
        places.append(place)
    neighbours = torch.from_numpy(placed_context_indices(places, config.context_offsets))
    if buffers is not None:
        return TrainSet(buffers[0], buffers[1], neighbours)
    return TrainSet(torch.stack(images), torch.stack(masks), neighbours)


