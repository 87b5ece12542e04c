"""The optional torch backend: the EASE and L3AE closed forms on a torch device (CUDA when present).

The NumPy path in `linalg.py` stays the reference. These functions take the same NumPy inputs,
run the Cholesky factorization, the inverse and the products with torch on `device`, and return
NumPy arrays in the input dtype, so callers never see a tensor. torch is imported lazily: a job
that keeps `compute.backend=numpy` never loads it here.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from l3ae_bench.errors import ConfigError, SolverError
from l3ae_bench.solvers.linalg import check_memory
from l3ae_bench.solvers.semantic import WoodburyFactors

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

TORCH_MATRICES = 3
"""Dense n × n tensors alive at once on the device: the input, its Cholesky factor, the inverse."""


def resolve_device(name: str) -> torch.device:
    """Return the torch device for `compute.device`: `auto` picks CUDA when it is available."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"compute.device={name} but torch sees no CUDA device. Use compute.device=auto "
            "or cpu, or install a CUDA build of torch."
        )
    return device


def check_device_memory(n_items: int, dtype: np.dtype, device: torch.device, what: str) -> None:
    """Raise `SolverError` when the tensors of one fit do not fit in the GPU's free memory."""
    if device.type != "cuda":
        return
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    check_memory(n_items, dtype, TORCH_MATRICES, what, available=free, where=f"{device} memory")


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Wrap a NumPy array as a tensor on `device`; on the CPU the memory is shared, not copied."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """Return a tensor's values as a NumPy array (a view for CPU tensors)."""
    return tensor.detach().cpu().numpy()


def spd_inverse_torch(A: torch.Tensor, what: str) -> torch.Tensor:
    """Invert a symmetric positive definite tensor through its Cholesky factor."""
    import torch

    started = time.perf_counter()
    factor, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        raise SolverError(
            f"{what} is not positive definite (Cholesky failed at pivot {int(info)} of "
            f"{A.shape[0]}). Increase the ridge weight so the diagonal shift is positive."
        )
    inverse = torch.cholesky_inverse(factor)
    del factor
    if not inverse.is_contiguous() and inverse.T.is_contiguous():
        # LAPACK writes column-major; the inverse is symmetric, so its transpose is the same
        # matrix in row-major order, without a copy.
        inverse = inverse.T
    if inverse.device.type == "cuda":
        torch.cuda.synchronize(inverse.device)
    log.debug(
        "Inverted %s (%d × %d) by Cholesky on %s in %.2fs",
        what,
        A.shape[0],
        A.shape[1],
        inverse.device,
        time.perf_counter() - started,
    )
    return inverse


def ease_weights_torch(A: np.ndarray, what: str, device: torch.device) -> np.ndarray:
    """Return EASE weights B = I − P·diag(1/diag(P)) for P = A⁻¹, computed on `device`."""
    check_device_memory(A.shape[0], A.dtype, device, what)
    P = spd_inverse_torch(to_device(A, device), what)
    P /= -P.diagonal().clone()[None, :]
    P.fill_diagonal_(0.0)
    return to_numpy(P)


def l3ae_weights_torch(
    A: np.ndarray,
    E: np.ndarray,
    factors: WoodburyFactors,
    lambda_e: float,
    device: torch.device,
) -> np.ndarray:
    """Return the L3AE weights from A = XᵀX + (λ_X + λ_E)I and the Woodbury factors, on `device`.

    Same formula as the NumPy route of `l3ae.fit_l3ae`: B = P·diag(a) + λ_E·(P·E)·V.
    """
    from l3ae_bench.solvers.l3ae import l3ae_column_scales

    check_device_memory(A.shape[0], A.dtype, device, "L3AE")
    P = spd_inverse_torch(to_device(A, device), "XᵀX + (λ_X + λ_E)·I")
    PE = P @ to_device(E, device)
    V = to_device(factors.V, device)
    P_diagonal = to_numpy(P.diagonal().double())
    R_diagonal = to_numpy((PE.double() * V.double().T).sum(dim=1))
    a = l3ae_column_scales(P_diagonal, R_diagonal, factors, lambda_e)
    P *= to_device(a, device).to(P.dtype)[None, :]
    P.addmm_(PE, V, alpha=lambda_e)
    P.fill_diagonal_(0.0)
    return to_numpy(P)
