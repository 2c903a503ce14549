"""Shared pytest setup.

Without CUDA, Triton kernels run in Triton's interpreter; the switch must be set before anything
imports triton, hence at conftest import time.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
