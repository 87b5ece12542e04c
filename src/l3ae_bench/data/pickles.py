"""Loading of the research code's pickle files with an allow-list of classes.

Pickle files can run arbitrary code when loaded. The RLMRec, EasyRec and L3AE research code
stores NumPy arrays and SciPy sparse matrices that way, so this unpickler accepts only classes
from NumPy, SciPy's sparse module and a few harmless builtins, and rejects everything else.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from l3ae_bench.errors import DataError

_ALLOWED_MODULE_PREFIXES = ("numpy", "scipy.sparse")
_ALLOWED_BUILTINS = {
    "tuple",
    "list",
    "dict",
    "set",
    "frozenset",
    "int",
    "float",
    "complex",
    "bool",
    "str",
    "bytes",
    "bytearray",
    "slice",
    "range",
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = (
            module.startswith(_ALLOWED_MODULE_PREFIXES)
            or (module == "builtins" and name in _ALLOWED_BUILTINS)
            or (module == "copyreg" and name == "_reconstructor")
        )
        if not allowed:
            raise pickle.UnpicklingError(f"class {module}.{name} is not allowed")
        return super().find_class(module, name)


def load_array_pickle(path: Path) -> Any:
    """Load a pickle that contains only NumPy arrays or SciPy sparse matrices."""
    if not path.is_file():
        raise DataError(f"File not found: {path}. Check the dataset or encoder path setting.")
    try:
        with open(path, "rb") as handle:
            return _ArrayUnpickler(handle).load()
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as error:
        raise DataError(
            f"{path}: cannot be read as a pickled NumPy array or SciPy sparse matrix ({error}). "
            "Re-export the file from the research code, or check that it is not truncated."
        ) from error
