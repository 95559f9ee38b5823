"""The model: any ``nn.Module`` built from the task (lrlab's trainer calls ``Net(task)``)."""

import math

from torch import nn


class Net(nn.Module):
    """Two hidden layers with dropout; logits for the task's classes."""

    def __init__(self, task, hidden: int = 32):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(task.input_shape), hidden),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, task.num_classes),
        )

    def forward(self, x):
        return self.layers(x)
