"""The source of a model that fails on cue (a NaN loss, out of memory, in training or validation), for tests that
write it as a user module and name it in a preset's `model.import`."""

FAULTY = """
import torch
from torch import nn


class Faulty(nn.Module):
    def __init__(self, input_shape, num_outputs, fault="nan", at=5):
        super().__init__()
        self.linear = nn.Linear(input_shape[0], num_outputs)
        self.fault, self.at, self.calls = fault, at, 0

    def forward(self, x):
        out = self.linear(x)
        if self.training:
            self.calls += 1
            if self.calls == self.at and self.fault == "oom":
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            if self.calls == self.at and self.fault == "oom-text":
                raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 8.00 GiB total)")
            if self.calls >= self.at and self.fault == "nan":
                return out * float("nan")
        elif self.fault == "nan-eval":
            return out * float("nan")
        elif self.fault == "oom-eval":
            self.calls += 1000
            if self.calls // 1000 == self.at:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return out


def build(input_shape, num_outputs, **options):
    return Faulty(input_shape, num_outputs, **options)
"""
