"""The GAN trainer: the plain trainer plus the SRGAN discriminator, adversarial and perceptual losses.

Recipe of Tan et al. (Meta-SRGAN): L1 + 0.001 adversarial + 0.006 perceptual, Adam 1e-4 for both
networks, learning rate cut by 20 % at fixed intervals, after a PSNR-oriented L1 pre-training phase.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engine.errors import MedSRError
from engine.models.srgan import SRGANDiscriminator
from engine.resources import shipped_weights_dir
from training.feature_net import load_feature_net
from training.losses import PerceptualLoss, adversarial_generator_loss, discriminator_loss
from training.trainer import Trainer

FEATURE_NET_FILE = "perceptual_features.safetensors"


class GANTrainer(Trainer):
    def __init__(self, cfg, emit=None, stop=None):
        super().__init__(cfg, emit, stop)
        self.pretrain = (
            cfg.pretrain_steps
            if cfg.pretrain_steps is not None
            else (0 if cfg.init else cfg.total_steps() // 5)
        )
        self.disc = SRGANDiscriminator().to(self.device)
        if self.world > 1:
            self.disc_module = torch.nn.parallel.DistributedDataParallel(self.disc)
        else:
            self.disc_module = self.disc
        self.d_optimizer = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr)
        self.d_scheduler = torch.optim.lr_scheduler.StepLR(
            self.d_optimizer, step_size=self.scheduler.step_size, gamma=cfg.lr_gamma
        )
        feat_path = Path(cfg.feature_net) if cfg.feature_net else shipped_weights_dir() / FEATURE_NET_FILE
        if not feat_path.exists():
            raise MedSRError(
                "perceptual feature network missing: run training/recipes/feature_net.py first", feat_path
            )
        self.feature_path = feat_path
        self.perceptual = PerceptualLoss(load_feature_net(feat_path)).to(self.device)

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor, scale: float) -> dict[str, float]:
        if self.step < self.pretrain:
            return super().train_step(lr, hr, scale)
        cfg = self.cfg
        sr = self.train_module(lr, scale)
        # discriminator: real HR vs detached SR
        d_loss = discriminator_loss(self.disc_module(hr), self.disc_module(sr.detach()))
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optimizer.step()
        # generator
        l1 = self.pixel(sr, hr)
        adv = adversarial_generator_loss(self.disc_module(sr))
        perc = self.perceptual(sr, hr)
        g_loss = l1 + cfg.adv_weight * adv + cfg.perceptual_weight * perc
        self.optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        self.optimizer.step()
        return {"l1": l1.item(), "adv": adv.item(), "perceptual": perc.item(), "d": d_loss.item()}

    def schedulers(self) -> list[Any]:
        return [self.scheduler, self.d_scheduler]

    def extra_state(self) -> dict[str, Any]:
        return {
            "disc": self.disc.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "d_scheduler": self.d_scheduler.state_dict(),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state:
            self.disc.load_state_dict(state["disc"])
            self.d_optimizer.load_state_dict(state["d_optimizer"])
            self.d_scheduler.load_state_dict(state["d_scheduler"])

    def recipe_extra(self) -> dict[str, Any]:
        return {
            "adv_weight": self.cfg.adv_weight,
            "perceptual_weight": self.cfg.perceptual_weight,
            "pretrain_l1_steps": self.pretrain,
            "perceptual_features": f"{self.feature_path.name}: our own VGG-style net trained self-supervised "
            "(orientation prediction) on training slices; replaces ImageNet VGG-19",
        }
