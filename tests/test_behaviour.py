"""Behaviour: training with the attention losses really separates target/confusing attention."""

from __future__ import annotations

import torch
from torch import nn

from discatt_timm import DiscriminativeAttentionLoss


class SmallNet(nn.Module):
    """Three conv stages (8/16/32 channels, strides 1/2/2), BatchNorm, GAP + linear head."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()

        def stage(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
            )

        self.layer1, self.layer2, self.layer3 = stage(1, 8, 1), stage(8, 16, 2), stage(16, 32, 2)
        self.fc = nn.Linear(32, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer3(self.layer2(self.layer1(x))).mean((2, 3)))


def synthetic_batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """16x16 noise plus a bar (orientation) and a dot (side): together they code 4 classes."""
    labels = torch.randint(0, 4, (n,), generator=generator)
    x = 0.3 * torch.randn(n, 1, 16, 16, generator=generator)
    offsets = torch.randint(2, 10, (n, 2), generator=generator)
    for i, (label, (r, c)) in enumerate(zip(labels.tolist(), offsets.tolist(), strict=True)):
        if label % 2 == 0:
            x[i, 0, r, c : c + 5] += 2.0  # horizontal bar
        else:
            x[i, 0, r : r + 5, c] += 2.0  # vertical bar
        x[i, 0, r + 3 if label < 2 else r, c + 3] += 2.0  # a dot whose side tells the pairs apart
    return x, labels


def train(attention: bool, steps: int = 150) -> tuple[float, float]:
    torch.manual_seed(0)
    model = SmallNet()
    criterion = DiscriminativeAttentionLoss(model, layers=("layer2", "layer3"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x, y = synthetic_batch(32, generator)
        out = criterion(x, y)
        loss = out.loss if attention else out.cls
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    x, y = synthetic_batch(256, torch.Generator().manual_seed(1))
    terms = criterion.terms(x, y)
    accuracy = (terms.logits.argmax(1) == y).float().mean().item()
    return (terms.siou_inner.mean() + terms.siou_last.mean()).item() / 2, accuracy


def test_attention_losses_lower_the_soft_iou_against_cross_entropy_alone():
    siou_ce, acc_ce = train(attention=False)
    siou_att, acc_att = train(attention=True)
    assert acc_ce > 0.5  # the task is learnt, so the maps compared are meaningful
    assert siou_att < 0.5 * siou_ce, (siou_att, siou_ce)
