"""Data files shipped with mbcore."""
import io
from importlib import resources

__all__ = ["get_data", "available_data"]


def available_data() -> list:
    """Names of the data files shipped in ``mbcore.data``."""
    return sorted(p.name for p in resources.files("mbcore.data").iterdir()
                  if p.is_file() and not p.name.startswith(("_", ".")))


def get_data(filename: str) -> io.BytesIO:
    """Return a BytesIO of a data file shipped in the package.

    Parameters
    ----------
    filename : str
        File name inside ``mbcore/data``, e.g. ``"regression.csv"``.

    Raises
    ------
    FileNotFoundError
        For an unknown name; the message lists the available files.

    Examples
    --------
    >>> import numpy as np
    >>> from mbcore import get_data
    >>> table = np.loadtxt(get_data("regression.csv"), delimiter=",", skiprows=1)
    >>> table.shape[1]
    4
    """
    if not isinstance(filename, str):
        raise TypeError(f"filename must be a str, got {type(filename).__name__} {filename!r}")
    names = available_data()
    if filename not in names:
        raise FileNotFoundError(f"no data file {filename!r} in mbcore; available: "
                                + ", ".join(names))
    return io.BytesIO(resources.files("mbcore.data").joinpath(filename).read_bytes())
