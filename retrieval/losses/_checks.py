"""Argument checks shared by the losses: one-line ValueErrors that name the offending shapes.

Holds only validation helpers; no loss arithmetic lives here.
"""

from __future__ import annotations

import math

import torch


def shape_of(tensor: torch.Tensor) -> str:
    """``[4, 8]`` for a 4x8 tensor: the form every shape error message uses."""
    return "[" + ", ".join(str(size) for size in tensor.shape) + "]"


def check_positive(value: float, name: str) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number > 0."""
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_matrix(tensor: torch.Tensor, name: str) -> None:
    """Raise unless ``tensor`` is 2-D with at least one row."""
    if tensor.dim() != 2 or tensor.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D tensor, got shape {shape_of(tensor)}")


def check_same_shape(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} {shape_of(a)} and {b_name} {shape_of(b)} must have the same shape"
        )


def check_same_width(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{a_name} {shape_of(a)} and {b_name} {shape_of(b)} differ in embedding dimension"
        )
