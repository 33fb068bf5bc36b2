"""Quantisation-aware training as a recipe of the one training entry point
(``deltamtl train --recipe deltamtl.model.quant.qat:recipe_qat``), and the calibration
batches it and the post-training quantiser use.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from deltamtl.model.quant.assemble import qat_value, trained_multitask
from deltamtl.model.quant.quantizer import Quantizer
from deltamtl.model.tasks import BASE_TASK
from torch import nn


def calibration_batches(cfg: dict, n_batches: int, batch_size: int = 8, split: str = "train"
                        ) -> list[torch.Tensor]:
    """Frames of the synthetic video for calibration: the first clips of ``split``, in order.

    Only the clips needed are rendered (the images are those SyntheticVideoDataset gives).
    """
    from deltamtl.model.data.datasets import synthetic_clips

    d, size = cfg["data"], int(cfg["model"]["img_size"])
    fpc = int(d["frames_per_clip"])
    n_clips = -(-n_batches * batch_size // fpc)
    clips = synthetic_clips(split, n_clips, fpc, size, size, seed=int(d["seed"]))
    rgb = np.concatenate([c.rgb for c in clips])[: n_batches * batch_size]
    imgs = torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2), np.float32) / 255.0)
    return list(imgs.split(batch_size))


def _recipe_base() -> type:
    from deltamtl.model.training.recipe import Recipe

    return Recipe


def recipe_qat(args: Any) -> Any:
    """QAT fine-tune of the whole multi-task model with fake-quant sites (STE gradients).

    ``build_model`` loads the trained model (base + step-3 sub-tasks, masks fixed) and
    installs the quantiser; ``initialize`` calibrates on the synthetic training video;
    the scales travel in the checkpoint's recipe state. Loss: sum over tasks of
    ``train.loss_weights[task] * task loss`` through the fake-quant forward. Trainable:
    everything except the Hard-Concrete gates (masked deltas stay exactly zero).
    Config: ``sharing.quant.{lr_qat, calib_batches, calib_percentile, sub_checkpoint}``.
    """
    Recipe = _recipe_base()

    class QatRecipe(Recipe):  # type: ignore[misc, valid-type]
        name = "qat"

        def __init__(self, a: Any) -> None:
            super().__init__(a, (BASE_TASK, *((a.cfg.get("sharing") or {}).get("subtasks") or ())))
            self.quantizer: Quantizer | None = None

        def build_model(self) -> nn.Module:
            mt = trained_multitask(self.cfg, sub_paths=qat_value(self.cfg, "sub_checkpoints"))
            self.quantizer = Quantizer(mt, percentile=float(qat_value(self.cfg, "calib_percentile")))
            self.quantizer.set_mode("qat")
            return mt

        def initialize(self, model: nn.Module) -> None:
            assert self.quantizer is not None
            self.quantizer.calibrate(calibration_batches(self.cfg, int(qat_value(self.cfg, "calib_batches"))))
            self.quantizer.set_mode("qat")

        def param_groups(self, model: nn.Module) -> list[dict]:
            params: dict[int, nn.Parameter] = {}
            for n, p in model.named_parameters():  # the base is frozen by load; unfreeze it
                p.requires_grad_(not n.endswith("log_alpha"))
                if p.requires_grad:
                    params[id(p)] = p
            return [{"params": list(params.values()), "lr": float(qat_value(self.cfg, "lr_qat")),
                     "weight_decay": 0.0}]

        def training_loss(self, model: nn.Module, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
            from deltamtl.model.data.synthetic import IGNORE_INDEX
            from deltamtl.model.training.losses import task_loss

            outputs = model(batch["image"])
            total = torch.zeros((), device=batch["image"].device)
            logs: dict[str, float] = {}
            weights = self.cfg["train"]["loss_weights"]
            for t, out in outputs.items():
                lt = task_loss(t, out, batch, self.cfg["train"], int(IGNORE_INDEX))
                logs[f"loss_{t}"] = float(lt.detach())
                total = total + float(weights.get(t, 1.0)) * lt
            return total, logs

        def state_dict(self) -> dict:
            assert self.quantizer is not None
            return {"scales": {f"{g.layer}:{g.site}": {"s_x": g.s_x, "s_y": dict(g.s_y)}
                               for g in self.quantizer.groups.values()}}

        def load_state_dict(self, state: dict) -> None:
            assert self.quantizer is not None
            for key, v in state.get("scales", {}).items():
                layer, site = key.split(":", 1)
                g = self.quantizer.groups[(int(layer), site)]
                g.s_x, g.s_y = v["s_x"], dict(v["s_y"])
            self.quantizer.set_mode("qat")

    return QatRecipe(args)
