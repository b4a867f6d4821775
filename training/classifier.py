"""A small CNN that scores generated Fashion-MNIST images by class.

Input [B, 1, 28, 28] in [-1, 1] (the DiT's pixel scale); output logits [B, 10]. Layers, in order
(the safetensors names; all F32, PyTorch layouts):
  conv1.weight [16, 1, 3, 3], conv1.bias [16]    3x3 conv, stride 1, zero padding 1, then ReLU,
                                                 then 2x2 max-pool stride 2 -> [B, 16, 14, 14]
  conv2.weight [32, 16, 3, 3], conv2.bias [32]   same -> [B, 32, 7, 7]
  fc1.weight [64, 1568], fc1.bias [64]           on the (channel, row, column)-major flattening, ReLU
  fc2.weight [10, 64], fc2.bias [10]             logits; argmax = predicted class
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class FashionClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, images):
        x = F.max_pool2d(F.relu(self.conv1(images)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def train_classifier(images, labels, epochs, batch_size, seed, log):
    """Adam with a per-epoch cosine learning rate from 1e-3; no augmentation (generated images are
    centred like the data they imitate)."""
    torch.manual_seed(seed)
    model = FashionClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        order = torch.randperm(len(images), generator=generator)
        total, count = 0.0, 0
        model.train()
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            loss = F.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
            count += len(index)
        log(f"classifier epoch {epoch + 1}/{epochs}: train loss {total / count:.4f}")
    model.eval()
    return model


@torch.no_grad()
def predict(model, images, batch_size=500):
    return torch.cat([model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])
