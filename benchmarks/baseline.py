"""The plain baseline: a DIP denoising loop written the way the reference DIP notebook writes it.

Per step: fresh input noise, forward, MSE to the noisy image, backward; the notebook's three
PSNRs (vs the noisy image, vs the clean image, and of the moving average) computed in NumPy on
CPU copies of the output; the moving average; the backtracking check with a copy of every
parameter to the CPU; then a per-parameter Adam step (``foreach=False``, torch 1.5's Adam).
"""

from __future__ import annotations

import numpy as np
import torch


def psnr_np(ref: np.ndarray, x: np.ndarray) -> float:
    """skimage 0.16's ``compare_psnr`` for float images in [0, 1]: MSE in float64, data range 1."""
    mse = np.mean(np.square(ref.astype(np.float64) - x.astype(np.float64)))
    return 10 * np.log10(1.0 / mse)


class DipLoop:
    """The reference loop, one ``step()`` at a time, on ``net`` with input ``z`` (1, C, H, W)."""

    def __init__(self, net, z, noisy, clean, *, lr=0.01, reg_noise_std=1 / 30, exp_weight=0.99, device="cpu"):
        self.net = net.to(device)
        self.net_input_saved = z.to(device)
        self.noise = self.net_input_saved.clone()
        self.noisy = noisy[None].to(device)
        self.noisy_np, self.clean_np = noisy.numpy(), clean.numpy()
        self.reg_noise_std, self.exp_weight = reg_noise_std, exp_weight
        self.optimizer = torch.optim.Adam(net.parameters(), lr=lr, foreach=False)
        self.mse = torch.nn.MSELoss()
        self.out_avg = None
        self.last_net = None
        self.psrn_noisy_last = 0.0
        self.i = 0

    def closure(self):
        net_input = self.net_input_saved + (self.noise.normal_() * self.reg_noise_std)
        out = self.net(net_input)
        if self.out_avg is None:
            self.out_avg = out.detach()
        else:
            self.out_avg = self.out_avg * self.exp_weight + out.detach() * (1 - self.exp_weight)
        total_loss = self.mse(out, self.noisy)
        total_loss.backward()
        out_np = out.detach().cpu().numpy()[0]
        psrn_noisy = psnr_np(self.noisy_np, out_np)
        psnr_np(self.clean_np, out_np)
        psnr_np(self.clean_np, self.out_avg.detach().cpu().numpy()[0])
        if self.i % 100:  # backtracking, as in the notebook
            if psrn_noisy - self.psrn_noisy_last < -5 and self.last_net is not None:
                for new_param, net_param in zip(self.last_net, self.net.parameters()):
                    net_param.data.copy_(new_param.to(net_param.device))
                return total_loss * 0
            # the notebook copies to the CPU; on a CPU .cpu() is a no-op, so clone to pay the same copy
            self.last_net = [x.detach().cpu().clone() for x in self.net.parameters()]
            self.psrn_noisy_last = psrn_noisy
        self.i += 1
        return total_loss

    def step(self):
        self.optimizer.zero_grad()
        self.closure()
        self.optimizer.step()
